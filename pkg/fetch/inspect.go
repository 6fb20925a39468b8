package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"image"
	_ "image/gif"  // registers GIF with image.DecodeConfig
	_ "image/jpeg" // registers JPEG
	_ "image/png"  // registers PNG
	"io"
	"mime"
	"net/http"
	"strings"
)

// SniffLen is how many leading bytes decide the content type
// (http.DetectContentType).
const SniffLen = 512

// MaxHead bounds the read-ahead used to find the dimensions of an image
// (a JPEG's size comes after its EXIF and ICC segments).
const MaxHead = 256 << 10

// Accepted image types, as sniffed.
const (
	TypePNG  = "image/png"
	TypeJPEG = "image/jpeg"
	TypeGIF  = "image/gif"
	TypeWebP = "image/webp"
)

// IsImageType reports whether the media type ct (parameters ignored) is an
// accepted image type: PNG, JPEG, GIF or WebP.
func IsImageType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ct))
	}
	switch mt {
	case TypePNG, TypeJPEG, TypeGIF, TypeWebP:
		return true
	}
	return false
}

// Info is what a Reader learned about the bytes.
type Info struct {
	// SHA256 is the lowercase hex SHA-256 of all bytes read.
	SHA256 string
	// Size is the number of bytes read.
	Size int64
	// ContentType is sniffed from the first SniffLen bytes.
	ContentType string
	// Width and Height are the image's dimensions, 0 when unknown.
	Width, Height int
}

// Reader passes bytes through unchanged while it hashes them, sniffs their
// content type and finds the dimensions of an image. Its memory is bounded
// by MaxHead whatever the size of the stream. It is not safe for concurrent
// use.
type Reader struct {
	r            io.Reader
	h            hash.Hash
	n            int64
	requireImage bool

	sniffed  bool
	pending  []byte // read ahead, not yet returned
	srcEOF   bool
	err      error // sticky error of the read-ahead
	notImage bool  // err is ErrNotImage: return no byte at all
	done     bool

	ct     string
	width  int
	height int
}

// Inspect returns a Reader over r that observes the bytes; it never fails
// because of what they are.
func Inspect(r io.Reader) *Reader { return &Reader{r: r, h: sha256.New()} }

// InspectImage is Inspect for a stream that must be an image of an accepted
// type: the first Read (or Sniff) fails with an error wrapping ErrNotImage,
// before any byte is returned, when it is not.
func InspectImage(r io.Reader) *Reader {
	ir := Inspect(r)
	ir.requireImage = true
	return ir
}

// Sniff reads ahead (at most MaxHead bytes, returned by later Reads) and
// returns the content type; for an image, Info then already holds its
// dimensions when they were found in the read-ahead. Use it to learn the
// type before choosing a sink. Errors: the source's, or ErrNotImage from a
// Reader made by InspectImage.
func (r *Reader) Sniff() (string, error) {
	if !r.sniffed {
		r.readAhead()
	}
	return r.ct, r.err
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if !r.sniffed {
		r.readAhead()
	}
	if r.notImage {
		return 0, r.err
	}
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		if len(r.pending) == 0 {
			r.pending = nil // release the head
		}
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.srcEOF {
		r.done = true
		return 0, io.EOF
	}
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		r.srcEOF, r.done = true, true
	}
	return n, err
}

// readAhead fills the head: SniffLen bytes, and for an image more, doubling,
// until its dimensions are known, MaxHead is reached or the stream ends.
func (r *Reader) readAhead() {
	r.sniffed = true
	head := make([]byte, 0, SniffLen)
	fill := func(upto int) {
		if cap(head) < upto {
			head = append(make([]byte, 0, upto), head...)
		}
		for len(head) < upto && !r.srcEOF && r.err == nil {
			n, err := r.r.Read(head[len(head):upto])
			r.h.Write(head[len(head) : len(head)+n])
			r.n += int64(n)
			head = head[:len(head)+n]
			switch {
			case err == io.EOF:
				r.srcEOF = true
			case err != nil:
				r.err = err
			}
		}
	}
	fill(SniffLen)
	r.pending = head
	if r.err != nil {
		return
	}
	r.ct = http.DetectContentType(head)
	if !IsImageType(r.ct) {
		if r.requireImage {
			r.err = fmt.Errorf("%w: sniffed %s", ErrNotImage, r.ct)
			r.notImage = true
		}
		return
	}
	for size := SniffLen; ; {
		w, h, err := dimensions(head, r.ct)
		if err == nil {
			r.width, r.height = w, h
			break
		}
		if !errors.Is(err, errNeedMore) || r.srcEOF || size >= MaxHead {
			break // unknown dimensions: 0x0
		}
		size = min(2*size, MaxHead)
		fill(size)
		if r.err != nil {
			break
		}
	}
	r.pending = head
}

var errNeedMore = errors.New("need more bytes")

// dimensions decodes the image header in head.
func dimensions(head []byte, ct string) (int, int, error) {
	if ct == TypeWebP {
		return webpSize(head)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(head))
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return 0, 0, errNeedMore
	}
	if err != nil {
		return 0, 0, err
	}
	return cfg.Width, cfg.Height, nil
}

// webpSize reads the dimensions from a WebP header (simple lossy "VP8 ",
// lossless "VP8L" or extended "VP8X"); golang.org/x/image/webp is not a
// dependency of this module.
func webpSize(b []byte) (int, int, error) {
	if len(b) < 30 {
		return 0, 0, errNeedMore
	}
	if string(b[0:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return 0, 0, errors.New("not a WebP header")
	}
	d := b[20:]
	switch string(b[12:16]) {
	case "VP8 ":
		if d[3] != 0x9d || d[4] != 0x01 || d[5] != 0x2a {
			return 0, 0, errors.New("bad VP8 start code")
		}
		return int(binary.LittleEndian.Uint16(d[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(d[8:]) & 0x3fff), nil
	case "VP8L":
		if d[0] != 0x2f {
			return 0, 0, errors.New("bad VP8L signature")
		}
		bits := binary.LittleEndian.Uint32(d[1:])
		return int(bits&0x3fff) + 1, int(bits>>14&0x3fff) + 1, nil
	case "VP8X":
		le24 := func(p []byte) int { return int(p[0]) | int(p[1])<<8 | int(p[2])<<16 }
		return le24(d[4:]) + 1, le24(d[7:]) + 1, nil
	}
	return 0, 0, errors.New("unknown WebP chunk")
}

// Done reports whether the stream has been read to its end.
func (r *Reader) Done() bool { return r.done }

// Info returns what the Reader learned. SHA256 and Size are final once Done
// (Read returned io.EOF); ContentType, Width and Height once the first Read
// or Sniff returned.
func (r *Reader) Info() Info {
	return Info{
		SHA256:      hex.EncodeToString(r.h.Sum(nil)),
		Size:        r.n,
		ContentType: r.ct,
		Width:       r.width,
		Height:      r.height,
	}
}
