package console

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/labstack/echo/v4"
	"golang.org/x/image/draw"
	"golang.org/x/sync/semaphore"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// ImageStore is what the console needs of the archive sink: reading an
// object, and the URI events name it by. dirstore.Store and s3store.Store
// implement it.
type ImageStore interface {
	// Get opens the object under key; the caller closes it. Errors:
	// blob.ErrNotFound, blob.ErrInvalidKey, or the store's.
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
	// URI is the address of key in the archive events: s3://<bucket>/<key>
	// or file:// and the absolute path.
	URI(key string) string
}

// Thumbnail sizes: the longest side, in pixels.
const (
	thumbSmall  = 160 // lists
	thumbMedium = 480 // job detail
)

// Limits of thumbnailing. An original is decoded only when its stored size
// and the memory its decoding takes — width × height × bytes per pixel of
// the decoded image, from the header alone — are within them; otherwise
// the thumbnail is the placeholder. A compressed file says little about
// that memory: a 0.5 MB PNG of 8192×8192 16-bit pixels decodes to 512 MiB.
const (
	maxOriginalBytes = 64 << 20
	// maxDecodeBytes caps the memory of decoding one original (a
	// 4096×4096 8-bit RGBA image).
	maxDecodeBytes = 64 << 20
	// decodeBudget bounds the memory of every decoding at once: decodings
	// wait for their share, so originals near maxDecodeBytes are decoded
	// one at a time.
	decodeBudget = 64 << 20
	// maxHeaderBytes bounds what is read to learn an original's format and
	// size (JPEG metadata segments come before the frame header).
	maxHeaderBytes = 1 << 20
	maxDecodes     = 4 // originals decoded at a time, whatever their size
)

// thumb is a scaled image ready to serve.
type thumb struct {
	data        []byte
	contentType string
}

// thumbnailer scales archived images and keeps the results in a bounded LRU
// cache keyed by object key and size. Originals are decoded at most
// maxDecodes at a time and within decodeBudget bytes, streamed from the
// store and never kept.
type thumbnailer struct {
	store     ImageStore
	slots     chan struct{}
	maxDecode int64               // maxDecodeBytes
	mem       *semaphore.Weighted // decodeBudget, in bytes of decoded pixels

	reserved atomic.Int64 // bytes of mem held now
	peak     atomic.Int64 // the most bytes of mem held at once (tests read it)

	mu       sync.Mutex
	lru      *list.List // of *thumbEntry, most recent first
	byKey    map[string]*list.Element
	bytes    int
	maxBytes int
}

type thumbEntry struct {
	key string
	t   thumb
}

// newThumbnailer returns a thumbnailer of the images in store with a cache
// of maxBytes and the decoding limits maxDecodeBytes and decodeBudget.
func newThumbnailer(store ImageStore, maxBytes int) *thumbnailer {
	return newThumbnailerWith(store, maxBytes, maxDecodeBytes, decodeBudget)
}

// newThumbnailerWith is newThumbnailer with other decoding limits; maxDecode
// must not exceed budget.
func newThumbnailerWith(store ImageStore, maxBytes int, maxDecode, budget int64) *thumbnailer {
	return &thumbnailer{store: store, slots: make(chan struct{}, maxDecodes), maxDecode: maxDecode,
		mem: semaphore.NewWeighted(budget), lru: list.New(), byKey: map[string]*list.Element{}, maxBytes: maxBytes}
}

// errNoPreview: the object is not an image the console can scale within its
// limits (answered with a placeholder).
var errNoPreview = errors.New("no preview")

func (t *thumbnailer) cached(k string) (thumb, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[k]; ok {
		t.lru.MoveToFront(e)
		return e.Value.(*thumbEntry).t, true
	}
	return thumb{}, false
}

func (t *thumbnailer) put(k string, th thumb) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byKey[k]; ok || len(th.data) > t.maxBytes/4 {
		return
	}
	t.byKey[k] = t.lru.PushFront(&thumbEntry{key: k, t: th})
	t.bytes += len(th.data)
	for t.bytes > t.maxBytes {
		last := t.lru.Back()
		e := last.Value.(*thumbEntry)
		t.lru.Remove(last)
		delete(t.byKey, e.key)
		t.bytes -= len(e.t.data)
	}
}

// get returns the thumbnail of the object under key, at most size pixels on
// its longest side, from the cache or made now. It blocks while maxDecodes
// others are being made, or while the memory budget is taken, until ctx
// ends. Errors: errNoPreview (wrapped), the store's, ctx's.
func (t *thumbnailer) get(ctx context.Context, key string, size int) (thumb, error) {
	ck := strconv.Itoa(size) + "/" + key
	if th, ok := t.cached(ck); ok {
		return th, nil
	}
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return thumb{}, ctx.Err()
	}
	defer func() { <-t.slots }()
	if th, ok := t.cached(ck); ok { // made while we waited
		return th, nil
	}
	th, err := t.make(ctx, key, size)
	if err != nil {
		return thumb{}, err
	}
	t.put(ck, th)
	return th, nil
}

// make reads the original's header, refuses it (errNoPreview) when its
// decoding would take more than maxDecodeBytes, waits for that much of the
// budget, then decodes it streaming from the store and scales it.
func (t *thumbnailer) make(ctx context.Context, key string, size int) (thumb, error) {
	rc, obj, err := t.store.Get(ctx, key)
	if err != nil {
		return thumb{}, err
	}
	defer rc.Close()
	if obj.Size > maxOriginalBytes {
		return thumb{}, fmt.Errorf("%w: original of %d bytes is too large", errNoPreview, obj.Size)
	}
	body := &readErr{r: io.LimitReader(rc, maxOriginalBytes)}
	cfg, format, head, err := readHeader(body)
	if body.err != nil {
		return thumb{}, fmt.Errorf("read %s: %w", key, body.err)
	}
	if err != nil {
		return thumb{}, err
	}
	cost, err := decodeCost(format, cfg, head, t.maxDecode)
	if err != nil {
		return thumb{}, err
	}
	if err := t.mem.Acquire(ctx, cost); err != nil {
		return thumb{}, err
	}
	t.peak.Store(max(t.peak.Load(), t.reserved.Add(cost)))
	defer func() {
		t.reserved.Add(-cost)
		t.mem.Release(cost)
	}()
	src, err := decode(format, io.MultiReader(bytes.NewReader(head), body))
	if body.err != nil {
		return thumb{}, fmt.Errorf("read %s: %w", key, body.err)
	}
	if err != nil {
		return thumb{}, fmt.Errorf("%w: %v", errNoPreview, err)
	}
	return scale(src, format, size)
}

// readErr remembers the first error of reading r other than io.EOF: a
// failing store, as opposed to a malformed image.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// readHeader reads an image's format and size from r, consuming at most
// maxHeaderBytes; head is what it consumed, to be read again before the rest
// of r. An unknown format or a header beyond the bound is errNoPreview.
func readHeader(r io.Reader) (cfg image.Config, format string, head []byte, err error) {
	var b bytes.Buffer
	cfg, format, err = image.DecodeConfig(io.TeeReader(io.LimitReader(r, maxHeaderBytes), &b))
	if err != nil {
		return image.Config{}, "", nil, fmt.Errorf("%w: %v", errNoPreview, err)
	}
	return cfg, format, b.Bytes(), nil
}

// decodeCost returns the bytes that decoding an image of format and cfg
// takes (its pixels, and what the decoder keeps beside them), or
// errNoPreview when that is over limit or the format is not one the console
// scales. head holds the image's first bytes, for the flags
// DecodeConfig does not report (PNG interlacing, progressive JPEG).
func decodeCost(format string, cfg image.Config, head []byte, limit int64) (int64, error) {
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, fmt.Errorf("%w: %dx%d pixels", errNoPreview, cfg.Width, cfg.Height)
	}
	px := int64(cfg.Width) * int64(cfg.Height)
	var perPixel int64
	switch format {
	case "png":
		perPixel = pngBytesPerPixel(cfg.ColorModel, head)
	case "jpeg":
		perPixel = jpegBytesPerPixel(cfg.ColorModel, head)
	case "gif":
		perPixel = 1 // one paletted frame: the decoder stops after the first
	default:
		return 0, fmt.Errorf("%w: %s", errNoPreview, format)
	}
	// Checked before multiplying: no overflow for any uint32 width×height.
	if px > limit || px*perPixel > limit {
		return 0, fmt.Errorf("%w: %dx%d pixels of %d bytes each to decode, over %d bytes", errNoPreview,
			cfg.Width, cfg.Height, perPixel, limit)
	}
	return px * perPixel, nil
}

// pngBytesPerPixel is what image/png allocates per pixel: 1 for a paletted
// image, 8 for 16-bit samples, 4 otherwise (a gray image with a
// transparent colour decodes to NRGBA); twice that for an interlaced image,
// whose passes are decoded apart before they are merged.
func pngBytesPerPixel(m color.Model, head []byte) int64 {
	var n int64 = 4
	if _, ok := m.(color.Palette); ok {
		n = 1
	} else if m == color.Gray16Model || m == color.RGBA64Model || m == color.NRGBA64Model {
		n = 8
	}
	// The IHDR chunk follows the 8-byte signature: length, type, width,
	// height, depth, colour type, compression, filter, interlace.
	if len(head) > 28 && head[28] == 1 {
		n *= 2
	}
	return n
}

// jpegBytesPerPixel is what image/jpeg allocates per pixel: a byte per
// component (at most 3 for YCbCr), 8 for CMYK (its YCbCr planes, then the
// CMYK image); a progressive image also keeps every coefficient, 4 bytes
// per component sample.
func jpegBytesPerPixel(m color.Model, head []byte) int64 {
	var n, components int64 = 3, 3
	switch m {
	case color.GrayModel:
		n, components = 1, 1
	case color.CMYKModel:
		n, components = 8, 4
	}
	if jpegProgressive(head) {
		n += 4 * components
	}
	return n
}

// jpegProgressive reports whether the frame header in head is a progressive
// one (SOF2, SOF6, SOF10, SOF14). It walks the marker segments from the
// start of the image to the first frame header.
func jpegProgressive(head []byte) bool {
	if len(head) < 2 || head[0] != 0xff || head[1] != 0xd8 {
		return false
	}
	for i := 2; i+4 <= len(head); {
		if head[i] != 0xff {
			return false
		}
		m := head[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xd0 && m <= 0xd7): // no length
			i += 2
			continue
		case m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce:
			return true
		case m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
			return false // another frame header
		case m == 0xda: // start of scan: no frame header before it
			return false
		}
		i += 2 + (int(head[i+2])<<8 | int(head[i+3]))
	}
	return false
}

// decode decodes a PNG, JPEG or GIF image (the first frame of a GIF).
func decode(format string, r io.Reader) (image.Image, error) {
	switch format {
	case "png":
		return png.Decode(r)
	case "jpeg":
		return jpeg.Decode(r)
	case "gif":
		return gif.Decode(r)
	}
	return nil, fmt.Errorf("%w: %s", errNoPreview, format)
}

// scale scales src (bilinear, never up) to at most size pixels on its
// longest side. JPEG stays JPEG; the others become PNG.
func scale(src image.Image, format string, size int) (thumb, error) {
	b := src.Bounds()
	w, h := fit(b.Dx(), b.Dy(), size)
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	var out bytes.Buffer
	if format == "jpeg" {
		if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 82}); err != nil {
			return thumb{}, err
		}
		return thumb{data: out.Bytes(), contentType: "image/jpeg"}, nil
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&out, dst); err != nil {
		return thumb{}, err
	}
	return thumb{data: out.Bytes(), contentType: "image/png"}, nil
}

// fit returns w×h scaled to at most size on the longest side, keeping the
// aspect ratio, at least 1×1, never larger than the original.
func fit(w, h, size int) (int, int) {
	if w <= size && h <= size {
		return w, h
	}
	if w >= h {
		return size, max(1, h*size/w)
	}
	return max(1, w*size/h), size
}

// placeholderSVG is served instead of a thumbnail that cannot be made.
const placeholderSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120" viewBox="0 0 160 120">` +
	`<rect width="160" height="120" fill="#eee"/><text x="80" y="64" font-family="sans-serif" font-size="12" ` +
	`text-anchor="middle" fill="#777">no preview</text></svg>`

// handleThumb serves GET /console/thumb?key=…&size=s|m: a scaled copy of an
// archived image.
func (s *Service) handleThumb(c echo.Context) error {
	key := c.QueryParam("key")
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
	}
	size := thumbSmall
	if c.QueryParam("size") == "m" {
		size = thumbMedium
	}
	th, err := s.thumbs.get(c.Request().Context(), key, size)
	switch {
	case errors.Is(err, errNoPreview):
		c.Response().Header().Set(echo.HeaderCacheControl, "private, max-age=300")
		return c.Blob(http.StatusOK, "image/svg+xml", []byte(placeholderSVG))
	case errors.Is(err, blob.ErrNotFound):
		return fmt.Errorf("%w: no archived image under this key", httpserver.ErrNotFound)
	case err != nil:
		return fmt.Errorf("%w: archive sink: %v", httpserver.ErrUnavailable, err)
	}
	// Archive keys are never rewritten with other content.
	c.Response().Header().Set(echo.HeaderCacheControl, "private, max-age=86400, immutable")
	return c.Blob(http.StatusOK, th.contentType, th.data)
}

// handleImage serves GET /console/image?key=…: the archived original, with
// its stored content type (images only; anything else is a download).
func (s *Service) handleImage(c echo.Context) error {
	key := c.QueryParam("key")
	if err := blob.ValidateKey(key); err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
	}
	rc, obj, err := s.store.Get(c.Request().Context(), key)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return fmt.Errorf("%w: no archived image under this key", httpserver.ErrNotFound)
	case err != nil:
		return fmt.Errorf("%w: archive sink: %v", httpserver.ErrUnavailable, err)
	}
	defer rc.Close()
	ct := obj.ContentType
	h := c.Response().Header()
	switch ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
	default:
		ct = "application/octet-stream"
		h.Set("Content-Disposition", "attachment")
	}
	h.Set(echo.HeaderCacheControl, "private, max-age=86400, immutable")
	h.Set(echo.HeaderContentLength, strconv.FormatInt(obj.Size, 10))
	return c.Stream(http.StatusOK, ct, rc)
}
