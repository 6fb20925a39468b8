package simulator_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image/png"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/simulator"
)

// TestImageServerServesPNGsUntilExpiry generates images, fetches them over
// HTTP (real PNGs of the recorded size and digest), and checks that a
// tampered or expired link is refused.
func TestImageServerServesPNGsUntilExpiry(t *testing.T) {
	t.Parallel()
	s, err := simulator.NewImageServer("127.0.0.1:0", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := mrand.New(mrand.NewPCG(1, 2))
	sizes := map[[2]int]bool{}
	var last string
	for i := range 12 {
		img, err := simulator.NewImage("img-"+string(rune('a'+i)), r)
		if err != nil {
			t.Fatal(err)
		}
		u := s.Add(img)
		last = u
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != img.SHA256 || len(body) != img.Size {
			t.Fatal("served bytes differ from the recorded digest")
		}
		dec, err := png.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if b := dec.Bounds(); b.Dx() != img.Width || b.Dy() != img.Height {
			t.Fatalf("decoded %v, recorded %dx%d", b, img.Width, img.Height)
		}
		sizes[[2]int{img.Width, img.Height}] = true
	}
	if len(sizes) < 3 {
		t.Fatalf("only %d distinct sizes", len(sizes))
	}
	if resp, err := http.Get(strings.Replace(last, "Signature=", "Signature=x", 1)); err != nil || resp.StatusCode != 403 {
		t.Fatalf("tampered link: %v %v", resp.StatusCode, err)
	}
	natstest.Eventually(t, 10*time.Second, "the link expired", func() bool {
		resp, err := http.Get(last)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 403
	})
	if s.Expired() == 0 || s.Fetches() < 12 {
		t.Fatalf("fetches %d, expired %d", s.Fetches(), s.Expired())
	}
}
