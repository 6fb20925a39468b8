// Package callback implements the signed event-callback protocol of the Alibaba
// Cloud Stable Diffusion product (the "002" seed): query parsing, the HMAC-SHA256
// signature, the AES-128-CBC user token and timestamp freshness.
//
// It is pure: no I/O, no logging. Every function that handles a decrypted token
// keeps it out of the errors it returns, so callers may log errors freely.
package callback
