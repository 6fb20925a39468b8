package aggregator

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/taskresult"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// keyOf returns the job Key of an INGRESS message from its subject and
// headers alone, and false for a message that takes no part in jobs. Every
// message with a key advances its key's State (jobs.Step, or jobs.Skip when
// its body is unreadable), so the key index (index.go), which sees headers
// only, and the workers agree on which messages each key is made of.
//
// Callbacks (sd.callback.<source>.<bizType>) count when sd-biz-type is
// sdPreInvoke, sdTaskFinished or sdJobFinished; SNS messages
// (sd.sns.<source>.<Type>) when Type is Notification. A message without
// sd-account belongs to account "_" (account.Unknown), as SNS tasks without a
// context account do.
func keyOf(subject string, h nats.Header, cfg jobs.Config) (jobs.Key, jobs.Kind, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "sd" {
		return jobs.Key{}, "", false
	}
	obs := jobs.Observation{Source: parts[2], Account: event.Get(h, event.HeaderSDAccount)}
	if obs.Account == "" {
		obs.Account = account.Unknown
	}
	switch parts[1] {
	case "callback":
		kind, ok := jobs.KindOf(event.Get(h, event.HeaderBizType))
		if !ok {
			return jobs.Key{}, "", false
		}
		obs.Kind, obs.InvokeID = kind, event.Get(h, event.HeaderInvokeID)
	case "sns":
		if parts[3] != "Notification" {
			return jobs.Key{}, "", false
		}
		obs.Kind = jobs.KindSNSResult
	default:
		return jobs.Key{}, "", false
	}
	return jobs.KeyOf(obs, cfg), obs.Kind, true
}

// observe turns an INGRESS message stored at seq and time t into the
// Observation of key k (from keyOf). ok is false when the body cannot be read
// as one (an SNS envelope without a readable task id or status): the worker
// then skips the message (jobs.Skip).
func observe(k jobs.Key, kind jobs.Kind, h nats.Header, data []byte, seq uint64, t time.Time) (jobs.Observation, bool) {
	obs := jobs.Observation{Seq: seq, Time: t, Source: k.Source, Account: k.Account, Kind: kind,
		InvokeID: event.Get(h, event.HeaderInvokeID)}
	if kind == jobs.KindSNSResult {
		obs.InvokeID = ""
		return observeSNS(obs, h, data)
	}
	if kind == jobs.KindPreInvoke {
		return obs, true
	}
	var imgs []taskresult.ImageSummary
	obs.Success, imgs = taskresult.SummarizeCallbackResult(data)
	if len(imgs) > 0 {
		obs.Images = make([]jobs.Image, len(imgs))
		for i, img := range imgs {
			obs.Images[i] = jobs.Image{ImageID: img.GeneratedImageID, URL: img.URL, Type: img.Type, Width: img.Width, Height: img.Height}
		}
	}
	return obs, true
}

// observeSNS reads the task message of an SNS Notification envelope.
func observeSNS(obs jobs.Observation, h nats.Header, envelope []byte) (jobs.Observation, bool) {
	var env struct {
		Message string `json:"Message"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return obs, false
	}
	r := taskresult.ParseSNSMessage(env.Message)
	obs.TaskID, obs.JobID = r.ID, r.JobID
	if obs.TaskID == "" {
		obs.TaskID = event.Get(h, event.HeaderTaskID)
	}
	switch r.Status {
	case taskresult.StatusRunning:
		obs.Status = jobs.TaskRunning
	case taskresult.StatusCompleted:
		obs.Status = jobs.TaskCompleted
	case taskresult.StatusFailed:
		obs.Status = jobs.TaskFailed
	default:
		return obs, false // no status and no result: nothing to learn
	}
	if r.Result != nil {
		obs.Success = *r.Result
	} else {
		obs.Success = obs.Status == jobs.TaskCompleted
	}
	for _, u := range r.Images {
		obs.Images = append(obs.Images, jobs.ImageFromURI(u.String()))
	}
	return obs, obs.TaskID != ""
}
