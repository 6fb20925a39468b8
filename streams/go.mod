module github.com/sdevents/sdevents/streams

go 1.26.8
