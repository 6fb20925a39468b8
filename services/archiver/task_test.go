package archiver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/event"
)

func callbackMsg(t *testing.T, at time.Time, account, invoke string, body string) *nats.Msg {
	t.Helper()
	m := event.Message("sd.callback.default.sdTaskFinished", event.Meta{ID: "x", Time: at, Subject: account}, []byte(body))
	if account != "" {
		event.Set(m, event.HeaderSDAccount, account)
	}
	event.Set(m, event.HeaderInvokeID, invoke)
	return m
}

func TestParseCallbackTask(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	stored := at.Add(time.Hour)
	cases := []struct {
		name    string
		account string
		body    string
		want    []image // ID, Source, Ext, Key, Model checked
	}{
		{"object", "a_x", `{"success":true,"data":{"generatedImageId":"g1","url":"https://cdn.example/p/1.PNG?Expires=1&Signature=s","type":"png","sdCheckpointName":"m1","width":512,"height":"768"}}`,
			[]image{{ID: "g1", Source: "https://cdn.example/p/1.PNG", Ext: "png", Model: "m1", Width: 512, Height: 768, Key: "a_x/2026/05/06/inv/g1.png"}}},
		{"list, type from the path, no id", "a_x", `{"success":true,"data":[{"generatedImageId":"g1","url":"https://h/1.jpeg"},{"url":"https://h/2.webp?sig=1","modelId":"7"},{"generatedImageId":"g1","url":"https://h/1.jpeg"},{"generatedImageId":"g3"}]}`,
			[]image{
				{ID: "g1", Source: "https://h/1.jpeg", Ext: "jpg", Key: "a_x/2026/05/06/inv/g1.jpg"},
				{ID: "url-" + hash8("https://h/2.webp"), Source: "https://h/2.webp", Ext: "webp", Model: "7", Key: "a_x/2026/05/06/inv/url-" + hash8("https://h/2.webp") + ".webp"},
			}},
		{"no account, unknown type", "", `{"success":true,"data":{"generatedImageId":"g/../1","url":"https://h/x","type":"tiff"}}`,
			[]image{{ID: "g/../1", Source: "https://h/x", Ext: "img", Key: "_/2026/05/06/inv/g_.._1.img"}}},
		{"failed task", "a_x", `{"success":false,"errMessage":"nsfw"}`, nil},
		{"data names no image", "a_x", `{"success":true,"data":{}}`, nil},
		{"entries without a url", "a_x", `{"success":true,"data":[{},{"type":"png"},{"generatedImageId":"g"},{"generatedImageId":"","url":""}]}`, nil},
		{"not JSON", "a_x", `<html>`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := callbackMsg(t, at, c.account, "inv", c.body)
			got := parseTask(m.Subject, m.Header, m.Data, stored)
			if !got.At.Equal(at) || got.TaskID != "inv" {
				t.Errorf("at %s task %q", got.At, got.TaskID)
			}
			if len(got.Images) != len(c.want) {
				t.Fatalf("images %+v, want %+v", got.Images, c.want)
			}
			for i, w := range c.want {
				g := got.Images[i]
				g.URL = ""
				if g != w {
					t.Errorf("image %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParseSNSTask(t *testing.T) {
	t.Parallel()
	stored := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	message, _ := json.Marshal(map[string]any{
		"id": 12345, "status": "completed", "result": true,
		"image_url": []any{"s3://out/a/image_0.png", "s3://out/b/image_0.png", "s3://out/c/weird name?.JPG", "ftp://x/y.png", 7},
	})
	env, _ := json.Marshal(map[string]string{"Type": "Notification", "Message": string(message)})
	m := &nats.Msg{Subject: "sd.sns.eks.Notification", Header: nats.Header{}, Data: env}
	got := parseTask(m.Subject, m.Header, m.Data, stored)
	if got.Account != "_" || got.TaskID != "12345" || !got.At.Equal(stored) {
		t.Errorf("task %+v", got)
	}
	if len(got.Images) != 3 {
		t.Fatalf("images %+v", got.Images)
	}
	a, b, c := got.Images[0], got.Images[1], got.Images[2]
	if a.ID == b.ID || !strings.HasPrefix(a.ID, "image_0-") || a.Key != "_/2026/05/06/12345/"+a.ID+".png" {
		t.Errorf("same file names are not told apart: %+v %+v", a, b)
	}
	if c.ID != "weird name?" || c.Ext != "jpg" || c.URL != "s3://out/c/weird%20name%3F.JPG" || c.Source != "s3://out/c/weird name?.JPG" {
		t.Errorf("image %+v", c)
	}
	if len(got.Problems) == 0 {
		t.Error("no problem noted for the ftp and numeric entries")
	}
	running, _ := json.Marshal(map[string]any{"id": "t", "status": "running"})
	env, _ = json.Marshal(map[string]string{"Message": string(running)})
	if got := parseTask("sd.sns.eks.Notification", nats.Header{}, env, stored); len(got.Images) != 0 {
		t.Errorf("running task has images %+v", got.Images)
	}
}
