package console

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"golang.org/x/image/draw"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// ImageStore is what the console needs of the archive sink: reading an
// object. dirstore.Store and s3store.Store implement it.
type ImageStore interface {
	// Get opens the object under key; the caller closes it. Errors:
	// blob.ErrNotFound, blob.ErrInvalidKey, or the store's.
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
}

// Thumbnail sizes: the longest side, in pixels.
const (
	thumbSmall  = 160 // lists
	thumbMedium = 480 // job detail
)

// Limits of thumbnailing: originals larger than these are not decoded.
const (
	maxOriginalBytes  = 64 << 20
	maxOriginalPixels = 64 << 20
	maxDecodes        = 4 // originals decoded at a time
)

// thumb is a scaled image ready to serve.
type thumb struct {
	data        []byte
	contentType string
}

// thumbnailer scales archived images and keeps the results in a bounded LRU
// cache keyed by object key and size. Originals are decoded at most
// maxDecodes at a time, and never kept.
type thumbnailer struct {
	store ImageStore
	slots chan struct{}

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

func newThumbnailer(store ImageStore, maxBytes int) *thumbnailer {
	return &thumbnailer{store: store, slots: make(chan struct{}, maxDecodes), lru: list.New(),
		byKey: map[string]*list.Element{}, maxBytes: maxBytes}
}

// errNoPreview: the object is not an image the console can scale (404 with a
// placeholder).
var errNoPreview = errors.New("no preview for this content type")

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
// its longest side, from the cache or made now.
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

func (t *thumbnailer) make(ctx context.Context, key string, size int) (thumb, error) {
	rc, obj, err := t.store.Get(ctx, key)
	if err != nil {
		return thumb{}, err
	}
	defer rc.Close()
	if obj.Size > maxOriginalBytes {
		return thumb{}, fmt.Errorf("%w: original of %d bytes is too large", errNoPreview, obj.Size)
	}
	raw, err := io.ReadAll(io.LimitReader(rc, maxOriginalBytes+1))
	if err != nil {
		return thumb{}, fmt.Errorf("read %s: %w", key, err)
	}
	return scale(raw, size)
}

// scale decodes a PNG, JPEG or GIF image and scales it (bilinear, never up)
// to at most size pixels on its longest side. JPEG stays JPEG; the others
// become PNG.
func scale(raw []byte, size int) (thumb, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		return thumb{}, fmt.Errorf("%w: %v", errNoPreview, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxOriginalPixels {
		return thumb{}, fmt.Errorf("%w: %dx%d pixels", errNoPreview, cfg.Width, cfg.Height)
	}
	var src image.Image
	switch format {
	case "png":
		src, err = png.Decode(bytes.NewReader(raw))
	case "jpeg":
		src, err = jpeg.Decode(bytes.NewReader(raw))
	case "gif":
		src, err = gif.Decode(bytes.NewReader(raw))
	default:
		return thumb{}, fmt.Errorf("%w: %s", errNoPreview, format)
	}
	if err != nil {
		return thumb{}, fmt.Errorf("%w: %v", errNoPreview, err)
	}
	w, h := fit(cfg.Width, cfg.Height, size)
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	var b bytes.Buffer
	if format == "jpeg" {
		if err := jpeg.Encode(&b, dst, &jpeg.Options{Quality: 82}); err != nil {
			return thumb{}, err
		}
		return thumb{data: b.Bytes(), contentType: "image/jpeg"}, nil
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, dst); err != nil {
		return thumb{}, err
	}
	return thumb{data: b.Bytes(), contentType: "image/png"}, nil
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
