package sns

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// topicRE matches an SNS topic ARN: arn:<partition>:sns:<region>:<account>:<name>.
var topicRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):sns:([a-z]{2}(?:-[a-z]+)+-[0-9]+):([0-9]{12}):([A-Za-z0-9_-]{1,256}(?:\.fifo)?)$`)

// certPathRE matches the path of an AWS signing certificate.
var certPathRE = regexp.MustCompile(`^/SimpleNotificationService-[0-9a-f]{1,64}\.pem$`)

// Topic is a parsed SNS topic ARN.
type Topic struct {
	Partition string // aws, aws-cn or aws-us-gov
	Region    string // e.g. us-east-1
	Account   string // 12 digits
	Name      string
}

// ParseTopicARN parses arn:<partition>:sns:<region>:<account>:<name>, with
// partition aws, aws-cn or aws-us-gov, a region of the form xx-name-N matching
// the partition (cn-* exactly for aws-cn), a 12-digit account and a topic name
// of letters, digits, '-' and '_' (optionally ending in .fifo). It fails with
// ErrMalformed.
func ParseTopicARN(arn string) (Topic, error) {
	m := topicRE.FindStringSubmatch(arn)
	if m == nil {
		return Topic{}, fmt.Errorf("%w: %q is not an SNS topic ARN", ErrMalformed, arn)
	}
	t := Topic{Partition: m[1], Region: m[2], Account: m[3], Name: m[4]}
	china := strings.HasPrefix(t.Region, "cn-")
	gov := strings.HasPrefix(t.Region, "us-gov-")
	if china != (t.Partition == "aws-cn") || gov != (t.Partition == "aws-us-gov") {
		return Topic{}, fmt.Errorf("%w: region %s is not in partition %s", ErrMalformed, t.Region, t.Partition)
	}
	return t, nil
}

// snsHost returns the SNS endpoint host of the topic's region:
// sns.<region>.amazonaws.com, or sns.<region>.amazonaws.com.cn in China.
func (t Topic) snsHost() string {
	if t.Partition == "aws-cn" {
		return "sns." + t.Region + ".amazonaws.com.cn"
	}
	return "sns." + t.Region + ".amazonaws.com"
}

// signingNames returns the names AWS issues the topic region's signing
// certificate to: sns.amazonaws.com in most regions, sns-signing.<region>.amazonaws.com
// in opt-in regions, sns-<region>.amazonaws.com.cn in China and
// sns-us-gov-west-1.amazonaws.com in GovCloud (as the AWS SDK for Java v2
// expects them).
func (t Topic) signingNames() []string {
	switch t.Partition {
	case "aws-cn":
		return []string{"sns-" + t.Region + ".amazonaws.com.cn"}
	case "aws-us-gov":
		return []string{"sns-us-gov-west-1.amazonaws.com"}
	default:
		return []string{"sns.amazonaws.com", "sns-signing." + t.Region + ".amazonaws.com"}
	}
}

// hostPolicy decides which hosts a Verifier contacts.
type hostPolicy struct {
	// extra holds the lowercased host[:port] values of Config.ExtraHosts.
	extra map[string]bool
}

// normalizeExtraHost validates one Config.ExtraHosts entry: host or
// host:port, no scheme, path or user info. It returns it lowercased.
func normalizeExtraHost(h string) (string, error) {
	if h == "" || strings.ContainsAny(h, "/@?#\\ ") || strings.Contains(h, "://") {
		return "", fmt.Errorf("extra host %q: want host or host:port", h)
	}
	u, err := url.Parse("https://" + h)
	if err != nil || u.Host != h || u.Hostname() == "" {
		return "", fmt.Errorf("extra host %q: want host or host:port", h)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("extra host %q: bad port", h)
		}
	}
	return strings.ToLower(h), nil
}

// checkURL applies the rules shared by SigningCertURL and SubscribeURL and
// returns the parsed URL and whether its host is an extra host. raw must be
// exactly https://<host><path>[?query] with host the SNS host of t's region
// (no port, no user info) or one of the extra hosts (with its port, if any);
// a fragment, a backslash, a non-ASCII or a control byte is refused. A query
// is refused unless allowQuery.
func (p hostPolicy) checkURL(raw string, t Topic, allowQuery bool) (*url.URL, bool, error) {
	bad := func(why string) (*url.URL, bool, error) {
		return nil, false, fmt.Errorf("%w: %s", ErrUntrustedURL, why)
	}
	const scheme = "https://"
	if !strings.HasPrefix(raw, scheme) {
		return bad("scheme is not https")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '#' {
			return bad(fmt.Sprintf("byte %#x not allowed", c))
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("unparsable")
	}
	if u.User != nil {
		return bad("user info")
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return bad("opaque or fragment")
	}
	if !allowQuery && (u.RawQuery != "" || u.ForceQuery) {
		return bad("query")
	}
	// The authority is everything between the scheme and the first '/' or
	// '?'; comparing it as a string refuses ports, user info and any host
	// spelling url.Parse might normalise.
	rest := raw[len(scheme):]
	authority := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority = rest[:i]
	}
	extra := false
	switch {
	case authority == t.snsHost():
	case p.extra[authority]:
		extra = true
	default:
		return bad(fmt.Sprintf("host %q is not the SNS host of %s", authority, t.Region))
	}
	if u.Host != authority {
		return bad("host does not parse back")
	}
	return u, extra, nil
}

// checkCertURL checks SigningCertURL: checkURL without a query, and the path
// /SimpleNotificationService-<lowercase hex>.pem with no escapes.
func (p hostPolicy) checkCertURL(raw string, t Topic) (*url.URL, bool, error) {
	u, extra, err := p.checkURL(raw, t, false)
	if err != nil {
		return nil, false, err
	}
	if u.RawPath != "" || !certPathRE.MatchString(u.Path) || u.EscapedPath() != u.Path {
		return nil, false, fmt.Errorf("%w: path %q is not /SimpleNotificationService-<hex>.pem", ErrUntrustedURL, u.EscapedPath())
	}
	return u, extra, nil
}

// checkSubscribeURL checks SubscribeURL: checkURL with any path and a query.
func (p hostPolicy) checkSubscribeURL(raw string, t Topic) error {
	_, _, err := p.checkURL(raw, t, true)
	return err
}
