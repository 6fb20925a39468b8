package fetch

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// blocked lists the ranges that are not public unicast beyond what the
// netip predicates catch.
var blocked = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // CGNAT shared address space
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"240.0.0.0/4",     // reserved, and broadcast
		"::/96",           // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"fec0::/10",       // site-local (deprecated)
		"3fff::/20",       // documentation
		"5f00::/16",       // SRv6 SIDs
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// IsPublic reports whether a is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local, CGNAT (100.64/10), multicast,
// unspecified, documentation, reserved or otherwise special. IPv4-mapped
// IPv6 addresses and the IPv4 addresses embedded in NAT64 (64:ff9b::/96) and
// 6to4 (2002::/16) addresses are judged as the IPv4 address they carry.
func IsPublic(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return IsPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return IsPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return true
}

// allowList holds the hosts that may be dialled whatever their address:
// entries are a host ("images.internal", "10.0.0.5", "::1") or a host and
// port ("127.0.0.1:9000", "[::1]:8080").
type allowList struct {
	hosts     map[string]bool // lowercase host
	hostPorts map[string]bool // lowercase net.JoinHostPort(host, port)
}

func newAllowList(entries []string) (allowList, error) {
	al := allowList{hosts: map[string]bool{}, hostPorts: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if h, p, err := net.SplitHostPort(e); err == nil && !strings.Contains(h, ":") || strings.HasPrefix(e, "[") && strings.Contains(e, "]:") {
			if err != nil || !validHost(h) || !validPort(p) {
				return al, &badAllowEntry{e}
			}
			al.hostPorts[net.JoinHostPort(h, p)] = true
			continue
		}
		h := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if !validHost(h) {
			return al, &badAllowEntry{e}
		}
		al.hosts[h] = true
	}
	return al, nil
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return h != "" && strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}) < 0
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

type badAllowEntry struct{ entry string }

func (e *badAllowEntry) Error() string { return "fetch: bad allow_hosts entry " + e.entry }

// allows reports whether host (without brackets) and port are listed.
func (al allowList) allows(host, port string) bool {
	host = strings.ToLower(host)
	return al.hosts[host] || al.hostPorts[net.JoinHostPort(host, port)]
}
