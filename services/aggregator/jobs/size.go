package jobs

import "unicode/utf8"

// The sizes below are upper bounds of the JSON encoding (encoding/json, as
// the adapter publishes records) of a Record's parts, without the archive
// URIs the adapter adds. Step keeps, per open job, the sum for what the job
// holds, and compares it with Config.MaxRecordBytes: the bound is computed
// from the facts alone, the same on every replica and replay.
const (
	// recordOverhead covers a record's fixed fields: ids, status, closed_by,
	// the largest credits, both times, images_dropped, punctuation.
	recordOverhead = 640
	// taskOverhead covers a task's keys, success, images_dropped and
	// punctuation.
	taskOverhead = 128
	// imageOverhead covers an image's keys, the largest width and height
	// and punctuation.
	imageOverhead = 96
)

// jsonLen is an upper bound of the length of s encoded as a JSON string by
// encoding/json: quotes, two bytes for '"' and '\\', six for control
// characters, '<', '>', '&', U+2028, U+2029 and every byte of invalid UTF-8
// (each becomes \ufffd).
func jsonLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// imageBytes bounds the encoding of img without its URI.
func imageBytes(img Image) int {
	return imageOverhead + jsonLen(img.ImageID) + jsonLen(img.URL) + jsonLen(img.Type)
}

// taskBytes bounds what t adds to a record: the task itself and, once more,
// its images among the record's top-level images.
func taskBytes(t Task) int {
	n := taskOverhead + jsonLen(t.TaskID) + jsonLen(t.InvokeID)
	for _, img := range t.Images {
		n += 2 * imageBytes(img)
	}
	return n
}

// recordBytes bounds the encoding of a record of key k without tasks or
// images.
func recordBytes(k Key) int {
	return recordOverhead + jsonLen(k.Account) + jsonLen(k.Source)
}

// capImages returns the first max images of in (a copy, never nil) and how
// many it left out.
func capImages(in []Image, max int) ([]Image, int) {
	n := min(len(in), max)
	return append(make([]Image, 0, n), in[:n]...), len(in) - n
}

// fitTask drops t's images from the end while t does not fit in room bytes,
// counting them in ImagesDropped, and returns its size. A task without
// images is kept whatever its size.
func fitTask(t *Task, room int) int {
	n := taskBytes(*t)
	for n > room && len(t.Images) > 0 {
		last := len(t.Images) - 1
		n -= 2 * imageBytes(t.Images[last])
		t.Images = t.Images[:last]
		t.ImagesDropped++
	}
	return n
}

// fitImages keeps the images of imgs that fit in room bytes, from the
// start, and returns them with the number dropped.
func fitImages(imgs []Image, room int) ([]Image, int) {
	n := 0
	for i, img := range imgs {
		if n += imageBytes(img); n > room {
			return imgs[:i], len(imgs) - i
		}
	}
	return imgs, 0
}

// factBytes bounds the encoding of f.
func factBytes(f Fact) int {
	n := 32 + taskOverhead + jsonLen(f.TaskID) + jsonLen(f.InvokeID)
	for _, img := range f.Images {
		n += imageBytes(img)
	}
	return n
}
