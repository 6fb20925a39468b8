// Package sns verifies Amazon SNS HTTP(S) deliveries: it parses the JSON
// envelope, rebuilds the canonical string-to-sign, checks the RSA signature
// (SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA) against the signing
// certificate, and confirms subscriptions.
//
// Parsing, canonical strings and URL policy are pure. Only a Verifier does I/O:
// it fetches signing certificates over verified TLS, and only from the SNS host
// of the topic's region (or a host the caller explicitly trusts), after the
// topic has been found in the allow-list and the message found fresh; a
// certificate must also chain to a trusted root (through the Amazon
// intermediates embedded from amazon-intermediates.pem), and nothing else is
// fetched to build that chain. The package never logs; every failure
// is returned as an error wrapping one of the sentinels in errors.go, which
// callers map to HTTP answers.
package sns
