package fetch_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/fetch"
)

func encode(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		p := image.NewPaletted(img.Bounds(), color.Palette{color.Black, color.White})
		err = gif.Encode(&buf, p, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jpegWithBigAPP puts a 100 KiB APP segment before the frame header, as
// EXIF and ICC data do.
func jpegWithBigAPP(t *testing.T) []byte {
	j := encode(t, "jpeg", 33, 21)
	var out bytes.Buffer
	out.Write(j[:2]) // SOI
	for range 2 {
		seg := make([]byte, 60_000)
		out.Write([]byte{0xff, 0xe2})
		binary.Write(&out, binary.BigEndian, uint16(len(seg)+2))
		out.Write(seg)
	}
	out.Write(j[2:])
	return out.Bytes()
}

func riff(chunk string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+len(data)))
	b.WriteString("WEBP")
	b.WriteString(chunk)
	binary.Write(&b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

func webpVP8L(w, h int) []byte {
	d := make([]byte, 40)
	d[0] = 0x2f
	binary.LittleEndian.PutUint32(d[1:], uint32(w-1)|uint32(h-1)<<14)
	return riff("VP8L", d)
}

func webpVP8X(w, h int) []byte {
	d := make([]byte, 40)
	d[4], d[5], d[6] = byte(w-1), byte((w-1)>>8), byte((w-1)>>16)
	d[7], d[8], d[9] = byte(h-1), byte((h-1)>>8), byte((h-1)>>16)
	return riff("VP8X", d)
}

func webpVP8(w, h int) []byte {
	d := make([]byte, 40)
	d[3], d[4], d[5] = 0x9d, 0x01, 0x2a
	binary.LittleEndian.PutUint16(d[6:], uint16(w))
	binary.LittleEndian.PutUint16(d[8:], uint16(h))
	return riff("VP8 ", d)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// oneByte returns one byte per Read, the worst case for the read-ahead.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestInspect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		data   []byte
		ct     string
		w, h   int
		image  bool
		sniffs bool // Sniff already knows the dimensions
	}{
		{name: "png", data: encode(t, "png", 17, 9), ct: "image/png", w: 17, h: 9, image: true},
		{name: "jpeg", data: encode(t, "jpeg", 40, 30), ct: "image/jpeg", w: 40, h: 30, image: true},
		{name: "jpeg big APP", data: jpegWithBigAPP(t), ct: "image/jpeg", w: 33, h: 21, image: true},
		{name: "gif", data: encode(t, "gif", 5, 6), ct: "image/gif", w: 5, h: 6, image: true},
		{name: "webp lossless", data: webpVP8L(1024, 768), ct: "image/webp", w: 1024, h: 768, image: true},
		{name: "webp extended", data: webpVP8X(4000, 3000), ct: "image/webp", w: 4000, h: 3000, image: true},
		{name: "webp lossy", data: webpVP8(512, 512), ct: "image/webp", w: 512, h: 512, image: true},
		{name: "html", data: []byte("<html><body>expired</body></html>"), ct: "text/html; charset=utf-8"},
		{name: "xml error", data: []byte(`<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>`), ct: "text/xml; charset=utf-8"},
		{name: "empty", data: nil, ct: "text/plain; charset=utf-8"},
		{name: "truncated png", data: encode(t, "png", 3, 3)[:20], ct: "image/png", image: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, src := range []io.Reader{bytes.NewReader(tc.data), oneByte{bytes.NewReader(tc.data)}} {
				r := fetch.Inspect(src)
				ct, err := r.Sniff()
				if err != nil || ct != tc.ct {
					t.Fatalf("Sniff = %q, %v; want %q", ct, err, tc.ct)
				}
				if in := r.Info(); in.Width != tc.w || in.Height != tc.h {
					t.Fatalf("dimensions after Sniff = %dx%d, want %dx%d", in.Width, in.Height, tc.w, tc.h)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, tc.data) {
					t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
				}
				in := r.Info()
				if !r.Done() || in.SHA256 != hexSum(tc.data) || in.Size != int64(len(tc.data)) || in.ContentType != tc.ct {
					t.Fatalf("Info = %+v, done %v", in, r.Done())
				}
				if fetch.IsImageType(in.ContentType) != tc.image {
					t.Fatalf("IsImageType(%s) = %v", in.ContentType, !tc.image)
				}
			}
			r := fetch.InspectImage(bytes.NewReader(tc.data))
			buf := make([]byte, 10)
			n, err := r.Read(buf)
			if tc.image && err != nil {
				t.Fatalf("InspectImage: %v", err)
			}
			if !tc.image && (n != 0 || !errors.Is(err, fetch.ErrNotImage) || !fetch.IsPermanent(err)) {
				t.Fatalf("InspectImage of %s: n=%d err=%v, want ErrNotImage and no bytes", tc.name, n, err)
			}
		})
	}
}

func TestIsImageType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"image/png": true, "IMAGE/JPEG": true, "image/gif": true, "image/webp; q=1": true,
		"image/bmp": false, "image/svg+xml": false, "text/html": false, "": false, "application/octet-stream": false,
	} {
		if got := fetch.IsImageType(ct); got != want {
			t.Errorf("IsImageType(%q) = %v", ct, got)
		}
	}
}

// A source error during the read-ahead surfaces after the bytes before it.
func TestInspectSourceError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := fetch.Inspect(io.MultiReader(strings.NewReader("abc"), errReader{boom}))
	got, err := io.ReadAll(r)
	if string(got) != "abc" || !errors.Is(err, boom) {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Streaming 200 MB through Inspect allocates a small, fixed amount.
func TestInspectMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB stream")
	}
	const n = 200 << 20
	head := encode(t, "png", 64, 64)
	src := io.MultiReader(bytes.NewReader(head), io.LimitReader(rand.NewChaCha8([32]byte{1}), n-int64(len(head))))
	want := sha256.New()
	src = io.TeeReader(src, want)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := fetch.InspectImage(src)
	m, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 32<<10))
	runtime.ReadMemStats(&after)
	if err != nil || m != n {
		t.Fatalf("copied %d, %v", m, err)
	}
	in := r.Info()
	if in.SHA256 != hex.EncodeToString(want.Sum(nil)) || in.Size != n || in.Width != 64 {
		t.Fatalf("Info = %+v", in)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("200 MB through Inspect: TotalAlloc %d KiB", alloc>>10)
	if alloc > 32<<20 {
		t.Fatalf("allocated %d bytes for a 200 MB stream", alloc)
	}
}
