package simulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Image is one generated PNG.
type Image struct {
	ID            string
	Width, Height int
	Size          int
	// SHA256 is the lowercase hex digest of the PNG, what the archive must
	// record.
	SHA256 string
	data   []byte
}

// imageSizes are the sizes images are drawn from: the usual Stable Diffusion
// aspect ratios, scaled down so that a run spends its CPU on the system under
// test rather than on PNG encoding.
var imageSizes = [][2]int{
	{256, 256}, {384, 384}, {512, 512}, {512, 768}, {768, 512},
	{320, 448}, {448, 320}, {640, 384}, {192, 256}, {1024, 1024},
}

// generatePNG draws a w×h image from seed (a gradient with discs) and
// encodes it as PNG. The same arguments give the same bytes.
func generatePNG(seed uint64, w, h int) ([]byte, error) {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	c0 := [3]int{r.IntN(256), r.IntN(256), r.IntN(256)}
	c1 := [3]int{r.IntN(256), r.IntN(256), r.IntN(256)}
	type disc struct {
		x, y, r2 int
		c        color.NRGBA
	}
	discs := make([]disc, 3+r.IntN(5))
	for i := range discs {
		rad := 8 + r.IntN(max(9, min(w, h)/3))
		discs[i] = disc{r.IntN(w), r.IntN(h), rad * rad,
			color.NRGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}}
	}
	for y := range h {
		for x := range w {
			t := (x*w + y*h) * 256 / (w*w + h*h)
			px := color.NRGBA{
				uint8((c0[0]*(256-t) + c1[0]*t) >> 8), uint8((c0[1]*(256-t) + c1[1]*t) >> 8),
				uint8((c0[2]*(256-t) + c1[2]*t) >> 8), 255,
			}
			for _, d := range discs {
				if dx, dy := x-d.x, y-d.y; dx*dx+dy*dy <= d.r2 {
					px = d.c
				}
			}
			img.SetNRGBA(x, y, px)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("simulator: png: %w", err)
	}
	return buf.Bytes(), nil
}

// NewImage generates the image id with a size drawn from r.
func NewImage(id string, r *mrand.Rand) (*Image, error) {
	sz := imageSizes[r.IntN(len(imageSizes))]
	if sz[0] == 1024 && r.IntN(4) != 0 { // keep the largest size rare
		sz = imageSizes[2]
	}
	data, err := generatePNG(r.Uint64(), sz[0], sz[1])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &Image{ID: id, Width: sz[0], Height: sz[1], Size: len(data), SHA256: hex.EncodeToString(sum[:]), data: data}, nil
}

// ImageServer serves generated images over HTTP at URLs that expire, like a
// platform's signed object-storage links: /images/<id>.png?Expires=<unix
// seconds>&Signature=<hmac>. An expired or tampered link is 403, an unknown
// image 404.
type ImageServer struct {
	ln     net.Listener
	srv    *http.Server
	ttl    time.Duration
	secret []byte
	now    func() time.Time

	mu     sync.RWMutex
	images map[string]*Image

	gets, expired atomic.Int64
}

// NewImageServer listens on addr (host:port; port 0 picks one) and serves
// images whose URLs are valid for ttl after they are issued. Close stops it.
func NewImageServer(addr string, ttl time.Duration) (*ImageServer, error) {
	if ttl <= 0 {
		return nil, errors.New("simulator: image URL lifetime must be positive")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: image server: %w", err)
	}
	s := &ImageServer{ln: ln, ttl: ttl, secret: make([]byte, 32), now: time.Now, images: map[string]*Image{}}
	_, _ = rand.Read(s.secret)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /images/{file}", s.serve)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Host is the server's host:port as it appears in URLs, the entry that
// archive.allow_hosts must hold.
func (s *ImageServer) Host() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *ImageServer) Close() error { return s.srv.Close() }

// Fetches counts the image downloads served.
func (s *ImageServer) Fetches() int64 { return s.gets.Load() }

// Expired counts requests refused with an expired link.
func (s *ImageServer) Expired() int64 { return s.expired.Load() }

// Add makes img downloadable and returns its URL, valid from now for the
// server's lifetime setting.
func (s *ImageServer) Add(img *Image) string {
	s.mu.Lock()
	s.images[img.ID] = img
	s.mu.Unlock()
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return "http://" + s.Host() + "/images/" + img.ID + ".png?Expires=" + exp +
		"&OSSAccessKeyId=sim&Signature=" + s.signature(img.ID, exp)
}

func (s *ImageServer) signature(id, exp string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(id + "\n" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *ImageServer) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".png")
	s.mu.RLock()
	img := s.images[id]
	s.mu.RUnlock()
	if !ok || img == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	exp := q.Get("Expires")
	if !hmac.Equal([]byte(q.Get("Signature")), []byte(s.signature(id, exp))) {
		ossError(w, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	if sec, err := strconv.ParseInt(exp, 10, 64); err != nil || s.now().Unix() > sec {
		s.expired.Add(1)
		ossError(w, "AccessDenied", "Request has expired.")
		return
	}
	s.gets.Add(1)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(img.data)))
	_, _ = w.Write(img.data)
}

func ossError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>\n", code, msg)
}
