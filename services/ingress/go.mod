module github.com/sdevents/sdevents/services/ingress

go 1.26.8

require (
	github.com/sdevents/sdevents/pkg v0.0.0
	github.com/sdevents/sdevents/streams v0.0.0
)

replace github.com/sdevents/sdevents/pkg => ../../pkg

replace github.com/sdevents/sdevents/streams => ../../streams
