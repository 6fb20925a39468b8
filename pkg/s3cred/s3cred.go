// Package s3cred chooses the credentials of the S3 clients (the archive sink
// archive.s3 and the image source archive.source_s3): the static keys of the
// configuration when it has them, else the AWS credential chain, so that a
// pod on EKS (IAM roles for service accounts, EKS Pod Identity) or on an EC2
// instance with a role needs no long-lived keys.
//
// The chain is minio-go's providers, asked in this order; the first that
// yields keys is used until they expire, then the chain is asked again:
//
//  1. AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY), AWS_SECRET_ACCESS_KEY (or
//     AWS_SECRET_KEY) and AWS_SESSION_TOKEN;
//  2. MINIO_ROOT_USER and MINIO_ROOT_PASSWORD (or MINIO_ACCESS_KEY and
//     MINIO_SECRET_KEY);
//  3. the shared credentials file: AWS_SHARED_CREDENTIALS_FILE, else
//     ~/.aws/credentials, profile AWS_PROFILE or "default";
//  4. IAM: web identity when AWS_WEB_IDENTITY_TOKEN_FILE is set (IRSA: STS
//     AssumeRoleWithWebIdentity of AWS_ROLE_ARN, regional when AWS_REGION
//     is set), container credentials when AWS_CONTAINER_CREDENTIALS_FULL_URI
//     or _RELATIVE_URI is set (EKS Pod Identity, ECS), else the EC2 instance
//     metadata service (IMDSv2, then v1).
//
// The providers read the process environment themselves. When none yields
// keys, requests go unsigned and the service refuses them (AccessDenied).
// Nothing here logs or returns a key.
package s3cred

import "github.com/minio/minio-go/v7/pkg/credentials"

// New returns static credentials when accessKey or secretKey is set (a
// configuration that sets only one is refused by pkg/config), else the
// chain of the package comment, in which region (optional) names the STS
// region when AWS_REGION is not set. It does no I/O: the chain is first
// asked on the client's first request.
func New(accessKey, secretKey, region string) *credentials.Credentials {
	if accessKey != "" || secretKey != "" {
		return credentials.NewStaticV4(accessKey, secretKey, "")
	}
	return credentials.NewChainCredentials(chain(region, ""))
}

// chain returns the providers of the package comment. iamEndpoint replaces
// the IAM provider's endpoint (the instance metadata service, the STS of web
// identity, or the container credentials); empty means AWS's.
func chain(region, iamEndpoint string) []credentials.Provider {
	return []credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.EnvMinio{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Endpoint: iamEndpoint, Region: region},
	}
}
