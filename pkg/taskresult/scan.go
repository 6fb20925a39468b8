package taskresult

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// ImageSummary is the part of a CallbackImage that names and sizes the
// image: what a job record keeps of it.
type ImageSummary struct {
	GeneratedImageID string // generatedImageId
	URL              string // url
	Type             string // type
	Width            int
	Height           int
}

// SummarizeCallbackResult reads the success and the ImageSummary of each
// image of an sdTaskFinished or sdJobFinished body exactly as
// ParseCallbackResult reads them, without its problems. Most bodies have the
// plain shape the platform sends (success a bool, data an object or a list of
// objects whose id, url and type are plain strings and whose sizes are plain
// integers); those are read by a scanner that does not allocate a map per
// object, which is most of the cost of reading a body. Anything else goes to
// ParseCallbackResult. FuzzSummarizeCallbackResult holds the two to the same
// answers. Like ParseCallbackResult it never fails.
func SummarizeCallbackResult(body []byte) (success bool, images []ImageSummary) {
	if ok, imgs, plain := scanCallback(body); plain {
		return ok, imgs
	}
	r := ParseCallbackResult(body)
	for _, img := range r.Images {
		images = append(images, ImageSummary{
			GeneratedImageID: img.GeneratedImageID, URL: img.URL, Type: img.Type, Width: img.Width, Height: img.Height,
		})
	}
	return r.Success, images
}

// scanCallback reads body when it has the plain shape; plain is false
// otherwise, and the caller must use the reference parser.
func scanCallback(body []byte) (success bool, images []ImageSummary, plain bool) {
	if !json.Valid(body) {
		return false, nil, false
	}
	s := scanner{b: body}
	// From here on body is valid JSON: the scanner only checks its shape.
	if !s.next('{') {
		return false, nil, false
	}
	var seenSuccess, seenData bool
	for !s.next('}') {
		s.next(',')
		key, ok := s.plainString()
		if !ok || !s.next(':') {
			return false, nil, false
		}
		switch string(key) {
		case "success":
			if seenSuccess {
				return false, nil, false
			}
			seenSuccess = true
			switch {
			case s.literal("true"):
				success = true
			case s.literal("false"):
				success = false
			default:
				return false, nil, false
			}
		case "data":
			if seenData {
				return false, nil, false
			}
			seenData = true
			switch {
			case s.literal("null"):
			case s.peek('{'):
				img, ok := s.image()
				if !ok {
					return false, nil, false
				}
				images = appendNamed(images, img)
			case s.next('['):
				for !s.next(']') {
					s.next(',')
					if !s.peek('{') {
						return false, nil, false
					}
					img, ok := s.image()
					if !ok {
						return false, nil, false
					}
					images = appendNamed(images, img)
				}
			default:
				return false, nil, false
			}
		default:
			s.skipValue()
		}
	}
	if !seenSuccess {
		return false, nil, false
	}
	s.space()
	return success, images, s.i == len(s.b)
}

// appendNamed appends img when it names an image (an id or a url), as
// ParseCallbackResult keeps only those: a data entry such as {} is no
// image.
func appendNamed(images []ImageSummary, img ImageSummary) []ImageSummary {
	if img.GeneratedImageID == "" && img.URL == "" {
		return images
	}
	return append(images, img)
}

// scanner walks a valid JSON document.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// peek reports whether the next token starts with c.
func (s *scanner) peek(c byte) bool {
	s.space()
	return s.i < len(s.b) && s.b[s.i] == c
}

// next consumes c if it comes next.
func (s *scanner) next(c byte) bool {
	if s.peek(c) {
		s.i++
		return true
	}
	return false
}

// literal consumes the literal lit (true, false, null) if it comes next.
func (s *scanner) literal(lit string) bool {
	s.space()
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// plainString consumes a string without escapes whose bytes are valid
// UTF-8, at most MaxTextLen of them, and returns its contents:
// those decode to themselves. A longer string is not plain: the reference
// parser leaves it out.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 || end > MaxTextLen {
		return nil, false
	}
	v := s.b[s.i : s.i+end]
	if bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
		return nil, false
	}
	s.i += end + 1
	return v, true
}

// image reads one data entry: an object whose generatedImageId, url and
// type are plain strings or null, and whose width and height are integers
// from 0 to 999,999,999 or null.
func (s *scanner) image() (ImageSummary, bool) {
	var img ImageSummary
	if !s.next('{') {
		return img, false
	}
	var seen [5]bool
	for !s.next('}') {
		s.next(',')
		key, ok := s.plainString()
		if !ok || !s.next(':') {
			return img, false
		}
		f := -1
		switch string(key) {
		case "generatedImageId":
			f = 0
		case "url":
			f = 1
		case "type":
			f = 2
		case "width":
			f = 3
		case "height":
			f = 4
		}
		if f < 0 {
			s.skipValue()
			continue
		}
		if seen[f] {
			return img, false
		}
		seen[f] = true
		if s.literal("null") {
			continue
		}
		if f >= 3 {
			n, ok := s.size()
			if !ok {
				return img, false
			}
			if f == 3 {
				img.Width = n
			} else {
				img.Height = n
			}
			continue
		}
		v, ok := s.plainString()
		if !ok {
			return img, false
		}
		switch f {
		case 0:
			img.GeneratedImageID = string(v)
		case 1:
			img.URL = string(v)
		case 2:
			img.Type = string(v)
		}
	}
	return img, true
}

// size reads an integer literal of at most nine digits without a leading
// zero, fraction or exponent; it stops reading at the tenth digit (a longer
// literal is not plain, whatever its length).
func (s *scanner) size() (int, bool) {
	s.space()
	start, n := s.i, 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' && s.i-start < 10 {
		n = n*10 + int(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 9 || digits > 1 && s.b[start] == '0' {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	return n, true
}

// skipValue consumes one value of the valid document.
func (s *scanner) skipValue() {
	s.space()
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			s.i++
			for s.i < len(s.b) && s.b[s.i] != '"' {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing container
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		}
		s.i++
	}
}
