package console

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/blob"
)

// zeroPNG encodes a w×h PNG of zero samples (colour type 0 gray, 2 RGB or 6
// RGBA; depth 8 or 16) without ever holding its pixels: the zlib stream
// repeats one compressed row (a block that refers only to itself), so even
// 8192×8192 16-bit RGBA takes a fraction of a second and half a megabyte.
func zeroPNG(t testing.TB, w, h int, depth, colorType byte) []byte {
	t.Helper()
	channels := map[byte]int{0: 1, 2: 3, 6: 4}[colorType]
	rowBytes := 1 + w*channels*int(depth)/8 // filter byte, then the samples
	var row bytes.Buffer
	fw, err := flate.NewWriter(&row, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(make([]byte, rowBytes)); err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil { // ends byte-aligned, not final
		t.Fatal(err)
	}
	var z bytes.Buffer
	z.Write([]byte{0x78, 0xda})
	for range h {
		z.Write(row.Bytes())
	}
	z.Write([]byte{0x01, 0x00, 0x00, 0xff, 0xff}) // final empty stored block
	// Adler-32 of n zero bytes: a = 1, b = n (mod 65521).
	n := uint64(h) * uint64(rowBytes)
	_ = binary.Write(&z, binary.BigEndian, uint32(n%65521)<<16|1)

	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&out, binary.BigEndian, uint32(len(data)))
		out.WriteString(typ)
		out.Write(data)
		_ = binary.Write(&out, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = depth, colorType
	chunk("IHDR", ihdr)
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

func TestZeroPNGDecodes(t *testing.T) {
	t.Parallel()
	raw := zeroPNG(t, 300, 200, 16, 6)
	img, err := decode("png", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 300 || b.Dy() != 200 || img.ColorModel() != color.NRGBA64Model {
		t.Fatalf("%v %T", b, img)
	}
}

// heapObjects is the bytes of heap objects, live or not yet swept.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeapGrowth samples the heap until the returned stop is called and
// returns then the largest growth seen over the heap after a collection at
// the start. A decoded original stays allocated for as long as it is
// scaled, far longer than the sampling interval.
func sampleHeapGrowth() (stop func() uint64) {
	runtime.GC()
	base := heapObjects()
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			if h := heapObjects(); h > base && h-base > peak.Load() {
				peak.Store(h - base)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// TestHugeThumbnailsTakeLittleMemory: four thumbnails at once of a 16-bit
// RGBA 8192×8192 PNG (about half a megabyte, 512 MiB decoded) are the
// placeholder, made from the header alone: the heap grows by less than
// 100 MB meanwhile. Not parallel: the heap is the process's.
func TestHugeThumbnailsTakeLittleMemory(t *testing.T) {
	h := newHarness(t)
	raw := zeroPNG(t, 8192, 8192, 16, 6)
	t.Logf("the original: %d bytes", len(raw))
	const n = 4
	for i := range n {
		h.archive(fmt.Sprintf("a_huge/%d.png", i), raw, "image/png")
	}
	raw = nil
	stop := sampleHeapGrowth()
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = h.do(h.client(), http.MethodGet, fmt.Sprintf("/console/thumb?key=a_huge/%d.png&size=s", i), nil, bearer)
		})
	}
	wg.Wait()
	growth := stop()
	t.Logf("heap growth: %.1f MB", float64(growth)/1e6)
	for i, a := range answers {
		if a.status != http.StatusOK || a.header.Get("Content-Type") != "image/svg+xml" || a.body != placeholderSVG {
			t.Errorf("thumbnail %d: %d %s, want the placeholder", i, a.status, a.header.Get("Content-Type"))
		}
	}
	if growth >= 100e6 {
		t.Fatalf("four thumbnails at once grew the heap by %.0f MB, want < 100 MB", float64(growth)/1e6)
	}
}

// memStore is an ImageStore in memory.
type memStore map[string][]byte

func (m memStore) Get(_ context.Context, key string) (io.ReadCloser, blob.Object, error) {
	raw, ok := m[key]
	if !ok {
		return nil, blob.Object{}, blob.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(raw)), blob.Object{Key: key, Size: int64(len(raw)), ContentType: "image/png"}, nil
}

func (m memStore) URI(key string) string { return "mem://" + key }

// TestLargeOriginalsAreDecodedOneAtATime: originals whose decoding takes
// more than half the budget are decoded one at a time, whatever the number
// of requests; each gets its thumbnail. (The limits are scaled down from
// maxDecodeBytes and decodeBudget to keep the test light.)
func TestLargeOriginalsAreDecodedOneAtATime(t *testing.T) {
	t.Parallel()
	const cost = 1000 * 1000 * 4 // an 8-bit RGBA 1000×1000 PNG
	const budget = cost * 3 / 2
	raw := zeroPNG(t, 1000, 1000, 8, 6)
	store := memStore{}
	const n = 4
	for i := range n {
		store[fmt.Sprintf("a_large/%d.png", i)] = raw
	}
	th := newThumbnailerWith(store, 1<<20, budget, budget)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := th.get(t.Context(), fmt.Sprintf("a_large/%d.png", i), thumbSmall)
			if err != nil || got.contentType != "image/png" {
				t.Errorf("thumbnail %d: %q, %v", i, got.contentType, err)
			}
		})
	}
	wg.Wait()
	if peak := th.peak.Load(); peak != cost {
		t.Fatalf("at most %d bytes of decoding at once, want %d: one original at a time", peak, cost)
	}
	// Over the cap: the placeholder, nothing decoded.
	small := newThumbnailerWith(store, 1<<20, cost-1, budget)
	if _, err := small.get(t.Context(), "a_large/0.png", thumbSmall); !errors.Is(err, errNoPreview) || small.peak.Load() != 0 {
		t.Fatalf("over the cap: %v, %d bytes reserved", err, small.peak.Load())
	}
}

// jpegHead is the start of a JPEG file up to a frame header of the given
// marker (0xc0 baseline, 0xc2 progressive), after an APP0 segment.
func jpegHead(sof byte) []byte {
	return append([]byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 'J', 'F', 0xff, 0xff}, 0xff, sof, 0x00, 0x11)
}

func TestDecodeCost(t *testing.T) {
	t.Parallel()
	pngHead := func(interlaced bool) []byte {
		h := make([]byte, 33)
		if interlaced {
			h[28] = 1
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		format string
		cfg    image.Config
		head   []byte
		want   int64 // 0: errNoPreview
	}{
		{"16-bit RGBA 8192²", "png", image.Config{Width: 8192, Height: 8192, ColorModel: color.NRGBA64Model}, pngHead(false), 0},
		{"8-bit RGBA 4096²", "png", image.Config{Width: 4096, Height: 4096, ColorModel: color.NRGBAModel}, pngHead(false), 64 << 20},
		{"8-bit RGBA 4097×4096", "png", image.Config{Width: 4097, Height: 4096, ColorModel: color.NRGBAModel}, pngHead(false), 0},
		{"gray, maybe transparent", "png", image.Config{Width: 100, Height: 100, ColorModel: color.GrayModel}, pngHead(false), 40000},
		{"16-bit gray", "png", image.Config{Width: 100, Height: 100, ColorModel: color.Gray16Model}, pngHead(false), 80000},
		{"paletted", "png", image.Config{Width: 100, Height: 100, ColorModel: color.Palette{color.Black}}, pngHead(false), 10000},
		{"interlaced", "png", image.Config{Width: 100, Height: 100, ColorModel: color.RGBAModel}, pngHead(true), 80000},
		{"baseline JPEG", "jpeg", image.Config{Width: 100, Height: 100, ColorModel: color.YCbCrModel}, jpegHead(0xc0), 30000},
		{"progressive JPEG", "jpeg", image.Config{Width: 100, Height: 100, ColorModel: color.YCbCrModel}, jpegHead(0xc2), 150000},
		{"progressive gray JPEG", "jpeg", image.Config{Width: 100, Height: 100, ColorModel: color.GrayModel}, jpegHead(0xc2), 50000},
		{"CMYK JPEG", "jpeg", image.Config{Width: 100, Height: 100, ColorModel: color.CMYKModel}, jpegHead(0xc0), 80000},
		{"GIF", "gif", image.Config{Width: 100, Height: 100, ColorModel: color.Palette{color.Black}}, nil, 10000},
		{"largest dimensions", "png", image.Config{Width: 1<<31 - 1, Height: 1<<31 - 1, ColorModel: color.NRGBA64Model}, pngHead(false), 0},
		{"no pixels", "png", image.Config{Width: 0, Height: 10, ColorModel: color.NRGBAModel}, pngHead(false), 0},
		{"other format", "webp", image.Config{Width: 10, Height: 10}, nil, 0},
	} {
		got, err := decodeCost(tc.format, tc.cfg, tc.head, maxDecodeBytes)
		switch {
		case tc.want == 0 && !errors.Is(err, errNoPreview):
			t.Errorf("%s: %d, %v; want errNoPreview", tc.name, got, err)
		case tc.want != 0 && (err != nil || got != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if jpegProgressive([]byte{0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff}) {
		t.Error("a segment running past the header is progressive")
	}
}

// TestHeaderBeyondItsBound: an image whose header does not fit in
// maxHeaderBytes is the placeholder; the bytes read are given back for
// decoding otherwise.
func TestHeaderBeyondItsBound(t *testing.T) {
	t.Parallel()
	// A JPEG whose first segments fill more than maxHeaderBytes.
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xd8})
	for b.Len() <= maxHeaderBytes {
		b.Write([]byte{0xff, 0xe1, 0xff, 0xff})
		b.Write(make([]byte, 0xffff-2))
	}
	if _, _, _, err := readHeader(io.MultiReader(&b, bytes.NewReader(testJPEG(t, 8, 8)[2:]))); !errors.Is(err, errNoPreview) {
		t.Fatalf("header past the bound: %v", err)
	}
	raw := testPNG(t, 40, 30)
	r := bytes.NewReader(raw)
	cfg, format, head, err := readHeader(r)
	if err != nil || format != "png" || cfg.Width != 40 {
		t.Fatalf("%v %s %v", cfg, format, err)
	}
	img, err := decode(format, io.MultiReader(bytes.NewReader(head), r))
	if err != nil || img.Bounds().Dx() != 40 {
		t.Fatalf("decode after the header: %v", err)
	}
}
