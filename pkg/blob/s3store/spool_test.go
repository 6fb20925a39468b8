package s3store

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestSpool(t *testing.T) {
	t.Parallel()
	const limit = 200 << 10
	data := make([]byte, limit+10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, limit - 1, limit, limit + 1, limit + 10} {
		for _, r := range []io.Reader{bytes.NewReader(data[:n]), iotest.OneByteReader(bytes.NewReader(data[:n])), iotest.DataErrReader(bytes.NewReader(data[:n]))} {
			buf, got, over, err := spool(r, limit)
			if err != nil {
				t.Fatalf("n %d: %v", n, err)
			}
			if n <= limit {
				if over != nil || got != n || !bytes.Equal((*buf)[:got], data[:n]) {
					t.Fatalf("n %d: got %d bytes, over %v", n, got, over)
				}
			} else {
				rest, _ := io.ReadAll(r)
				all := append(append(append([]byte{}, (*buf)[:got]...), over...), rest...)
				if got != limit || len(over) != 1 || !bytes.Equal(all, data[:n]) {
					t.Fatalf("n %d: got %d bytes, over %v, then %d", n, got, over, len(rest))
				}
			}
			if buf != nil && len(*buf) > limit {
				t.Fatalf("n %d: buffer of %d bytes over the limit", n, len(*buf))
			}
			if buf != nil {
				putSpool(buf)
			}
		}
	}
	boom := errors.New("boom")
	if _, _, _, err := spool(iotest.TimeoutReader(bytes.NewReader(data)), limit); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("failing reader: %v", err)
	}
	if _, _, _, err := spool(io.MultiReader(bytes.NewReader(data[:limit]), iotest.ErrReader(boom)), limit); !errors.Is(err, boom) {
		t.Fatalf("reader failing at the limit: %v", err)
	}
}

func TestGetSpoolClamped(t *testing.T) {
	t.Parallel()
	b := getSpool(5<<20, 5<<20) // class 8 MiB, clamped to the part size
	if len(*b) != 5<<20 {
		t.Fatalf("len %d", len(*b))
	}
	putSpool(b)
	if b := getSpool(6<<20, 7<<20); len(*b) < 6<<20 || len(*b) > 7<<20 {
		t.Fatalf("len %d, want a buffer of 6–7 MiB", len(*b))
	}
}

func TestSpoolReaderDetach(t *testing.T) {
	t.Parallel()
	r := &spoolReader{b: []byte("hello")}
	if err := iotest.TestReader(r, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	r.detach()
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, errDetached) {
		t.Fatalf("Read after detach: %v", err)
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); !errors.Is(err, errDetached) {
		t.Fatalf("ReadAt after detach: %v", err)
	}
}
