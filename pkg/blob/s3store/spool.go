package s3store

import (
	"errors"
	"io"
	"math/bits"
	"sync"
)

// Spool buffers come in size classes of powers of two from 64 KiB, each
// class a sync.Pool, so that a steady stream of images reuses a few buffers
// instead of allocating one per Put. A buffer never exceeds the part size of
// the store that allocated it.
const minSpoolClass = 16 // 64 KiB

var spoolPools [64]sync.Pool // of *[]byte, indexed by class

func spoolClass(n int) int {
	if n <= 1 {
		return minSpoolClass
	}
	return max(bits.Len(uint(n-1)), minSpoolClass)
}

// getSpool returns a buffer of length at least n (n ≤ limit) and at most
// limit, from the pool of n's class when one there is large enough.
func getSpool(n, limit int) *[]byte {
	k := spoolClass(n)
	if v, ok := spoolPools[k].Get().(*[]byte); ok {
		if len(*v) >= n && len(*v) <= limit {
			return v
		}
		spoolPools[k].Put(v) // another store's, of another part size
	}
	b := make([]byte, min(1<<k, max(n, limit)))
	return &b
}

// putSpool returns b to the pool of its class. The caller must hold no
// other reference to it.
func putSpool(b *[]byte) {
	if len(*b) > 0 {
		spoolPools[spoolClass(len(*b))].Put(b)
	}
}

// spool reads r to EOF into a pooled buffer while it yields at most limit
// bytes. It returns the buffer (nil when r yielded nothing), the number of
// bytes read, and whether r has more: then all limit bytes and the next one,
// over, were read, and the caller continues from them. A read error other
// than io.EOF is returned, with the buffer already released.
func spool(r io.Reader, limit int) (buf *[]byte, n int, over []byte, err error) {
	for {
		if buf == nil || n == min(len(*buf), limit) {
			if n == limit {
				var one [1]byte
				m, err := io.ReadFull(r, one[:])
				switch {
				case m == 1:
					return buf, n, one[:], nil
				case err == io.EOF:
					return buf, n, nil, nil
				default:
					putSpool(buf)
					return nil, 0, nil, err
				}
			}
			nb := getSpool(min(max(2*n, 1), limit), limit)
			if buf != nil {
				copy(*nb, (*buf)[:n])
				putSpool(buf)
			}
			buf = nb
		}
		m, err := r.Read((*buf)[n:min(len(*buf), limit)])
		n += m
		if err == io.EOF {
			return buf, n, nil, nil
		}
		if err != nil {
			putSpool(buf)
			return nil, 0, nil, err
		}
	}
}

// errDetached is what a spoolReader yields once its Put is over.
var errDetached = errors.New("s3store: read of a request body after its request ended")

// spoolReader serves a spooled object to minio-go. net/http may read a
// request body after the request ended (when the server answered early), so
// the buffer is returned to its pool only after detach, which makes every
// later read fail instead of racing with the buffer's next user. It is an
// io.ReaderAt and io.Seeker so that minio-go may retry the PUT.
type spoolReader struct {
	mu  sync.Mutex
	b   []byte // nil once detached
	off int64
}

func (s *spoolReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return 0, errDetached
	}
	if s.off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[s.off:])
	s.off += int64(n)
	return n, nil
}

func (s *spoolReader) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return 0, errDetached
	}
	if off < 0 {
		return 0, errors.New("s3store: negative offset")
	}
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *spoolReader) Seek(offset int64, whence int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += int64(len(s.b))
	default:
		return 0, errors.New("s3store: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("s3store: negative position")
	}
	s.off = offset
	return offset, nil
}

// detach ends every access to the buffer; it is safe to reuse afterwards.
func (s *spoolReader) detach() {
	s.mu.Lock()
	s.b = nil
	s.mu.Unlock()
}

// drainReader yields b once, then releases it to its pool: the multipart
// path copies the spooled head of a large object into its own part buffer
// and the head need not stay in memory after that.
type drainReader struct {
	b   *[]byte
	n   int // valid bytes in *b
	off int
}

func (d *drainReader) Read(p []byte) (int, error) {
	if d.b == nil {
		return 0, io.EOF
	}
	m := copy(p, (*d.b)[d.off:d.n])
	d.off += m
	if d.off == d.n {
		putSpool(d.b)
		d.b = nil
	}
	return m, nil
}

// release returns the buffer to its pool if it was not drained. The reader
// must not be read afterwards.
func (d *drainReader) release() {
	if d.b != nil {
		putSpool(d.b)
		d.b = nil
	}
}
