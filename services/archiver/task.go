package archiver

import (
	"cmp"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/taskresult"
)

// noAccount is the account id of events that carry none (contract §5).
const noAccount = "_"

// task is what one INGRESS message asks the archiver to do: the images of a
// task or job result, and where they belong.
type task struct {
	Account string
	// TaskID is the invoke id of a callback or the task id of an SNS
	// message ("" when the message names none).
	TaskID string
	// At is the event time (ce-time, else the time JetStream stored it).
	At     time.Time
	Images []image
	// Problems lists what the parsers found odd; never values.
	Problems []string
}

// image is one image to archive.
type image struct {
	// ID is the image id as the platform gave it, or derived (see docs).
	ID string
	// URL is the address to fetch: http(s) as sent (its query may hold a
	// signature: never log it), or an s3:// URI escaped for fetch.
	URL string
	// Source is the address as recorded: no query, printable.
	Source string
	Model  string
	// Ext is the key's extension: declared by the platform (type field or
	// file name), else "img". The stored content type is sniffed instead.
	Ext string
	// Width and Height are the declared dimensions, 0 when unknown.
	Width, Height int
	// Key is the object key (ObjectKey).
	Key string
}

// parseTask reads an INGRESS message consumed by the archiver: a callback
// (sd.callback.<source>.<bizType>, data = the body) or an SNS Notification
// (sd.sns.<source>.Notification, data = the envelope). It never fails; a
// message without images gives a task without images. stored is the time
// JetStream stored the message, used when ce-time is missing or unreadable.
func parseTask(subject string, h nats.Header, data []byte, stored time.Time) task {
	t := task{Account: event.Get(h, event.HeaderSDAccount), At: stored}
	if t.Account == "" {
		t.Account = noAccount
	}
	if at, err := time.Parse(time.RFC3339Nano, event.Get(h, event.HeaderTime)); err == nil {
		t.At = at
	}
	if strings.HasPrefix(subject, contract.SubjectSNS) {
		t.TaskID = event.Get(h, event.HeaderTaskID)
		t.Images = t.snsImages(data)
	} else {
		t.TaskID = event.Get(h, event.HeaderInvokeID)
		t.Images = t.callbackImages(data)
	}
	// Keys are computed last: they need the task id, and the same key twice
	// in one message is one image.
	seen := map[string]bool{}
	out := t.Images[:0]
	for _, img := range t.Images {
		img.Ext = cmp.Or(img.Ext, extFallback)
		img.Key = ObjectKey(t.Account, t.At, t.TaskID, img.ID, img.Ext)
		if !seen[img.Key] {
			seen[img.Key] = true
			out = append(out, img)
		}
	}
	t.Images = out
	return t
}

func (t *task) callbackImages(body []byte) []image {
	r := taskresult.ParseCallbackResult(body)
	t.Problems = append(t.Problems, r.Problems...)
	var imgs []image
	for _, ci := range r.Images {
		if ci.URL == "" {
			continue
		}
		img := image{
			ID: ci.GeneratedImageID, URL: ci.URL, Source: contract.SourceOf(ci.URL),
			Model: cut(cmp.Or(ci.CheckpointName, ci.ModelID), maxMetaModel), Width: ci.Width, Height: ci.Height,
		}
		declared := extOf(ci.Type)
		if u, err := url.Parse(ci.URL); err == nil && declared == "" {
			declared = pathExt(u.Path)
		}
		if img.ID == "" {
			img.ID = "url-" + hash8(img.Source)
		}
		img.Ext = declared
		imgs = append(imgs, img)
	}
	return imgs
}

func (t *task) snsImages(envelope []byte) []image {
	var env struct {
		Message string `json:"Message"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		t.Problems = append(t.Problems, "envelope is not a JSON object with a Message")
		return nil
	}
	r := taskresult.ParseSNSMessage(env.Message)
	t.Problems = append(t.Problems, r.Problems...)
	if t.TaskID == "" {
		t.TaskID = r.ID
	}
	if t.Account == noAccount && r.Account != "" {
		// The ingress derives the id from context.account (sd-account);
		// without that header the raw value is not an account id.
		t.Problems = append(t.Problems, "sd-account header missing for a message with context.account")
	}
	var imgs []image
	stems := map[string]int{}
	for _, raw := range r.ImageURLs {
		img := image{}
		if s3, err := taskresult.ParseS3URI(raw); err == nil {
			img.URL = (&url.URL{Scheme: "s3", Host: s3.Bucket, Path: "/" + s3.Key}).String()
			img.Source = contract.SourceOf(raw)
			img.ID, img.Ext = stem(s3.Key), pathExt(s3.Key)
		} else if u, err := url.Parse(raw); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			img.URL, img.Source = raw, contract.SourceOf(raw)
			img.ID, img.Ext = stem(u.Path), pathExt(u.Path)
		} else {
			t.Problems = append(t.Problems, "an image_url is neither s3:// nor http(s)")
			continue
		}
		stems[img.ID]++
		imgs = append(imgs, img)
	}
	// Two images with the same file name (in different prefixes) get the
	// hash of their address appended, so neither overwrites the other.
	for i := range imgs {
		if imgs[i].ID == "" || stems[imgs[i].ID] > 1 {
			imgs[i].ID += "-" + hash8(imgs[i].Source)
		}
	}
	return imgs
}

// selection is what the archiver does with the images of one task result.
type selection struct {
	// Kept are the images to archive: the first distinct ones, at most the
	// limit.
	Kept []image
	// Duplicates is the number of entries naming an address (without
	// query) already listed: one fetch per address.
	Duplicates int
	// Dropped are the distinct images beyond the limit.
	Dropped []image
}

// selectImages keeps the first limit images of imgs with distinct
// addresses, in order.
func selectImages(imgs []image, limit int) selection {
	var sel selection
	seen := make(map[string]bool, min(len(imgs), limit+1))
	for _, img := range imgs {
		if seen[img.Source] {
			sel.Duplicates++
			continue
		}
		seen[img.Source] = true
		if len(sel.Kept) < limit {
			sel.Kept = append(sel.Kept, img)
		} else {
			sel.Dropped = append(sel.Dropped, img)
		}
	}
	return sel
}
