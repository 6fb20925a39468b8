package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestRunArchivesIntoTheDirectory runs `sdevents run` from the example
// configuration: a signed sdTaskFinished callback naming an image on a
// loopback server (allowed in archive.allow_hosts) ends up as a file in
// archive.dir and one stored event in ARCHIVE.
func TestRunArchivesIntoTheDirectory(t *testing.T) {
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewGray(image.Rect(0, 0, 3, 2))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img.Bytes()) }))
	defer srv.Close()
	host := srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()

	cfg := exampleConfig(t, t.TempDir())
	cfg.Archive.AllowHosts = []string{host}
	r := startRun(t, cfg)
	key := callback.Key{AK: cfg.Callbacks[0].Keys[0].AK, SK: cfg.Callbacks[0].Keys[0].SK.Reveal()}
	body := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"http://` + host + `/a.png?Signature=x","type":"png"}}`)
	enc, err := callback.EncryptToken("user-archive", key.SK, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := callback.Params{APIID: "api", BizType: callback.BizTaskFinished, InvokeID: "i-archive", APIToken: enc,
		Nonce: "n-archive", Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(key, p, body, "user-archive")
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	resp, err := http.Post("http://"+r.p.http.Addr()+"/v1/callbacks/default?"+q.Encode(), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback answered %d", resp.StatusCode)
	}

	var ev contract.ArchiveStored
	natstest.Eventually(t, 20*time.Second, "a stored event", func() bool {
		st, err := r.p.js.Stream(t.Context(), contract.StreamArchive)
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(t.Context(), contract.SubjectArchiveStored+"*")
		return err == nil && json.Unmarshal(m.Data, &ev) == nil
	})
	b, err := os.ReadFile(filepath.Join(cfg.Archive.Dir, filepath.FromSlash(ev.Key)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img.Bytes())
	if !bytes.Equal(b, img.Bytes()) || ev.SHA256 != hex.EncodeToString(sum[:]) || ev.Width != 3 || ev.Height != 2 {
		t.Errorf("archived %d bytes, event %+v", len(b), ev)
	}
	if ev.TaskID != "i-archive" || ev.SourceURL != "http://"+host+"/a.png" {
		t.Errorf("event %+v", ev)
	}
}

func TestArchiverCommandNeedsExternalNATS(t *testing.T) {
	root := newRoot(nil)
	root.SetArgs([]string{"archiver", "--config", filepath.Join("..", "..", "sdevents.example.yaml")})
	if err := root.Execute(); err == nil {
		t.Fatal("archiver started without nats.url")
	}
}
