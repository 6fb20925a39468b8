package s3cred

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sdevents/sdevents/pkg/miniotest"
)

// chainEnv are the variables the chain's providers read. cleanEnv empties
// them (t.Setenv: the providers read the process environment, so these tests
// do not run in parallel) and points HOME at an empty directory, so that no
// key of the machine running the tests takes part.
var chainEnv = []string{
	"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
	"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
	"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_REGION",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
}

func cleanEnv(t *testing.T) {
	t.Helper()
	for _, k := range chainEnv {
		t.Setenv(k, "")
	}
	t.Setenv("HOME", t.TempDir())
}

// works reports whether a client with creds may list the bucket; it fails
// the test on anything but success or AccessDenied-like refusals.
func works(t *testing.T, srv *miniotest.Server, bucket string, creds *credentials.Credentials) bool {
	t.Helper()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		switch minio.ToErrorResponse(err).Code {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return false
		}
		t.Fatalf("bucket exists: %v", err)
	}
	if !ok {
		t.Fatalf("bucket %s does not exist", bucket)
	}
	return true
}

// imds serves the EC2 instance metadata service's credential endpoints
// (IMDSv2) on loopback, handing out key. It counts the requests.
func imds(t *testing.T, key, secret string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	const role, token = "sdevents-archiver", "imds-session-token"
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, token)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "no session token", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, role)
	})
	mux.HandleFunc("GET /latest/meta-data/iam/security-credentials/"+role, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "no session token", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key, "SecretAccessKey": secret,
			"Token": "", "Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &calls
}

// Static keys are used as they are: keys in the environment neither replace
// nor rescue them.
func TestStaticKeysComeFirst(t *testing.T) {
	cleanEnv(t)
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "static")

	t.Setenv("AWS_ACCESS_KEY_ID", "someone-else")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "someone-elses-secret")
	if !works(t, srv, bucket, New(srv.AccessKey, srv.SecretKey, "")) {
		t.Error("the static keys were not used: the environment's came first")
	}

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	if works(t, srv, bucket, New(srv.AccessKey, "wrong-secret", "")) {
		t.Error("wrong static keys were replaced by the environment's")
	}
}

// Without static keys the environment's AWS keys are used, and the IAM
// provider is not asked.
func TestKeysFromTheEnvironment(t *testing.T) {
	cleanEnv(t)
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "env")
	meta, calls := imds(t, "never", "never-secret")

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	if !works(t, srv, bucket, credentials.NewChainCredentials(chain("", meta.URL))) {
		t.Error("the AWS_* keys of the environment were not used")
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the instance metadata service was asked %d times while the environment had keys", n)
	}
	if !works(t, srv, bucket, New("", "", "")) {
		t.Error("New without static keys did not use the environment")
	}
}

// Without static keys or keys in the environment or a credentials file, the
// instance metadata service's keys are used (IMDSv2).
func TestKeysFromInstanceMetadata(t *testing.T) {
	cleanEnv(t)
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "imds")
	meta, calls := imds(t, srv.AccessKey, srv.SecretKey)
	if !works(t, srv, bucket, credentials.NewChainCredentials(chain("", meta.URL))) {
		t.Error("the instance metadata service's keys were not used")
	}
	if calls.Load() < 3 {
		t.Errorf("%d requests to the instance metadata service, want the token, the role and its keys", calls.Load())
	}
}

// A credentials file (AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE) is
// read when the environment has no keys.
func TestKeysFromTheCredentialsFile(t *testing.T) {
	cleanEnv(t)
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "file")
	meta, calls := imds(t, "never", "never-secret")
	file := filepath.Join(t.TempDir(), "credentials")
	content := fmt.Sprintf("[default]\naws_access_key_id = nobody\naws_secret_access_key = nobodys-secret\n\n[archiver]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "archiver")
	if !works(t, srv, bucket, credentials.NewChainCredentials(chain("", meta.URL))) {
		t.Error("the credentials file's profile was not used")
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the instance metadata service was asked %d times", n)
	}
}

// IRSA: a projected service-account token in AWS_WEB_IDENTITY_TOKEN_FILE is
// exchanged for temporary keys by STS AssumeRoleWithWebIdentity. Here the
// STS is MinIO's, trusting an OpenID provider served on loopback whose key
// signs the token, as EKS's OIDC issuer signs the service-account token.
func TestKeysFromWebIdentity(t *testing.T) {
	cleanEnv(t)
	issuer := newIssuer(t)
	t.Setenv("MINIO_IDENTITY_OPENID_CONFIG_URL", issuer.URL+"/.well-known/openid-configuration")
	t.Setenv("MINIO_IDENTITY_OPENID_CLIENT_ID", "sts.amazonaws.com")
	t.Setenv("MINIO_IDENTITY_OPENID_CLAIM_NAME", "policy")
	srv := miniotest.Start(t)
	for _, k := range []string{"MINIO_IDENTITY_OPENID_CONFIG_URL", "MINIO_IDENTITY_OPENID_CLIENT_ID", "MINIO_IDENTITY_OPENID_CLAIM_NAME"} {
		t.Setenv(k, "")
	}
	bucket := srv.MakeBucket(t, "irsa")

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(issuer.sign(t, map[string]any{
		"iss": issuer.URL, "aud": "sts.amazonaws.com", "sub": "system:serviceaccount:sdevents:sdevents",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "policy": "readwrite",
	})), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile)
	// MinIO answers STS only once its IAM subsystem has loaded, after the
	// server is live: poll.
	var creds *credentials.Credentials
	for deadline := time.Now().Add(30 * time.Second); ; {
		creds = credentials.NewChainCredentials(chain("", "http://"+srv.Endpoint))
		if works(t, srv, bucket, creds) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the web identity's keys were refused for 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	v, err := creds.GetWithContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.AccessKeyID == srv.AccessKey || v.SessionToken == "" {
		t.Errorf("access key %q with session token %t: want temporary keys from STS", v.AccessKeyID, v.SessionToken != "")
	}

	// A token the provider did not sign gets no keys.
	other := newIssuer(t)
	if err := os.WriteFile(tokenFile, []byte(other.sign(t, map[string]any{
		"iss": issuer.URL, "aud": "sts.amazonaws.com", "sub": "x",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "policy": "readwrite",
	})), 0o600); err != nil {
		t.Fatal(err)
	}
	if works(t, srv, bucket, credentials.NewChainCredentials(chain("", "http://"+srv.Endpoint))) {
		t.Error("a token signed by another key was accepted")
	}
}

// issuer is an OpenID provider on loopback: its discovery document and its
// signing key (RS256) as a JWK set.
type issuer struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	b64 := base64.RawURLEncoding.EncodeToString
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/keys",
			"authorization_endpoint": is.URL + "/auth", "token_endpoint": is.URL + "/token",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"sub", "iss", "aud", "policy"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	is.Server = httptest.NewUnstartedServer(mux) // is.URL set before any handler runs
	is.Start()
	t.Cleanup(is.Close)
	return is
}

// sign returns claims as a JWT signed with the issuer's key.
func (is *issuer) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	head, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	body, _ := json.Marshal(claims)
	signing := b64(head) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, is.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join([]string{signing, b64(sig)}, ".")
}
