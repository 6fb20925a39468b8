package console

import (
	"net/url"
	"strings"

	"github.com/sdevents/sdevents/pkg/contract"
)

// The console decodes the stream data of CONTRACT §6, not the producers'
// structs: it reads records written by any version of the aggregator,
// archiver and quota service, and it builds without them. JOBS and ARCHIVE
// events are decoded into pkg/contract's types.

// allImages returns the job's images followed by its tasks' images, each
// image once (by URL, else id).
func allImages(r contract.JobRecord) []contract.JobImage {
	seen := map[string]bool{}
	var out []contract.JobImage
	add := func(imgs []contract.JobImage) {
		for _, img := range imgs {
			k := img.URL
			if k == "" {
				k = "id:" + img.ImageID
			}
			if !seen[k] {
				seen[k] = true
				out = append(out, img)
			}
		}
	}
	add(r.Images)
	for _, t := range r.Tasks {
		add(t.Images)
	}
	return out
}

// sinkKeys maps the archive URIs of events to keys of the configured sink.
type sinkKeys struct {
	// filePrefix is "file://" + the sink directory + "/" (directory sink).
	filePrefix string
	// bucket is the S3 bucket (S3 sink).
	bucket string
}

// keysOf maps the archive URIs of store's objects to their keys: those of
// its bucket (s3://<bucket>/...) or of its directory (file://<dir>/...).
func keysOf(store ImageStore) sinkKeys {
	prefix := strings.TrimSuffix(store.URI("x"), "x")
	if u, err := url.Parse(prefix); err == nil && u.Scheme == "s3" {
		return sinkKeys{bucket: u.Host}
	}
	return sinkKeys{filePrefix: prefix}
}

// key returns the object key of uri in the sink, and false when uri names
// another sink.
func (s sinkKeys) key(uri string) (string, bool) {
	if uri == "" {
		return "", false
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", false
	}
	switch {
	case u.Scheme == "s3" && s.bucket != "" && u.Host == s.bucket:
		k := strings.TrimPrefix(u.Path, "/")
		return k, k != ""
	case u.Scheme == "file" && s.filePrefix != "":
		p, err := url.Parse(s.filePrefix)
		if err != nil {
			return "", false
		}
		k, ok := strings.CutPrefix(u.Path, p.Path)
		if !ok || k == "" {
			return "", false
		}
		return k, true
	}
	return "", false
}
