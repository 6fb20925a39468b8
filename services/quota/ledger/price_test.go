package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"testing"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

func TestParsePrice(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		body       string
		perImage   int64 // 1 when zero
		wantImages int64
		wantErr    error
	}{
		{name: "empty body", body: "", wantImages: 1},
		{name: "blank body", body: " \n\t", wantImages: 1},
		{name: "not JSON", body: "prompt=cat&steps=20", wantImages: 1},
		{name: "JSON array", body: `[{"batch_size":5}]`, wantImages: 1},
		{name: "JSON string", body: `"{\"batch_size\":5}"`, wantImages: 1},
		{name: "JSON number", body: `42`, wantImages: 1},
		{name: "empty object", body: `{}`, wantImages: 1},
		{name: "no count fields", body: `{"prompt":"a cat","steps":30}`, wantImages: 1},
		{name: "batch and iterations", body: `{"batch_size":2,"n_iter":3}`, wantImages: 6},
		{name: "leading space", body: ` {"batch_size":2}`, wantImages: 2},
		{name: "float with zero fraction", body: `{"batch_size":2.0}`, wantImages: 2},
		{name: "exponent", body: `{"batch_size":1e2}`, wantImages: 100},
		{name: "fraction", body: `{"batch_size":2.5}`, wantErr: ledger.ErrBadPrice},
		{name: "fraction below double precision reads as Python does", body: `{"batch_size":2.0000000000000001}`, wantImages: 2},
		{name: "numeric string", body: `{"batch_size":"3"}`, wantImages: 3},
		{name: "numeric string with zero fraction", body: `{"n_iter":"3.0"}`, wantImages: 3},
		{name: "numeric string fraction", body: `{"n_iter":"3.5"}`, wantErr: ledger.ErrBadPrice},
		{name: "string with spaces", body: `{"batch_size":" 3"}`, wantErr: ledger.ErrBadPrice},
		{name: "string with plus", body: `{"batch_size":"+3"}`, wantErr: ledger.ErrBadPrice},
		{name: "hex string", body: `{"batch_size":"0x10"}`, wantErr: ledger.ErrBadPrice},
		{name: "leading zero string", body: `{"batch_size":"03"}`, wantErr: ledger.ErrBadPrice},
		{name: "word", body: `{"batch_size":"three"}`, wantErr: ledger.ErrBadPrice},
		{name: "string with a dangling point", body: `{"batch_size":"3."}`, wantErr: ledger.ErrBadPrice},
		{name: "string with a dangling exponent", body: `{"batch_size":"3e"}`, wantErr: ledger.ErrBadPrice},
		{name: "string of a minus sign", body: `{"batch_size":"-"}`, wantErr: ledger.ErrBadPrice},
		{name: "string with fraction and exponent", body: `{"batch_size":"1.5E+1"}`, wantImages: 15},
		{name: "empty string", body: `{"batch_size":""}`, wantErr: ledger.ErrBadPrice},
		{name: "NaN string", body: `{"batch_size":"NaN"}`, wantErr: ledger.ErrBadPrice},
		{name: "Infinity string", body: `{"batch_size":"Infinity"}`, wantErr: ledger.ErrBadPrice},
		{name: "negative", body: `{"batch_size":-1}`, wantErr: ledger.ErrBadPrice},
		{name: "negative string", body: `{"n_iter":"-1"}`, wantErr: ledger.ErrBadPrice},
		{name: "negative fraction", body: `{"n_iter":-0.5}`, wantErr: ledger.ErrBadPrice},
		{name: "zero is one", body: `{"batch_size":0,"n_iter":0}`, wantImages: 1},
		{name: "negative zero is one", body: `{"batch_size":-0}`, wantImages: 1},
		{name: "underflow is zero", body: `{"batch_size":1e-400}`, wantImages: 1},
		{name: "null is absent", body: `{"batch_size":null,"n_iter":2}`, wantImages: 2},
		{name: "boolean", body: `{"batch_size":true}`, wantErr: ledger.ErrBadPrice},
		{name: "array", body: `{"batch_size":[2]}`, wantErr: ledger.ErrBadPrice},
		{name: "object", body: `{"n_iter":{"value":2}}`, wantErr: ledger.ErrBadPrice},
		{name: "1e9", body: `{"batch_size":1e9}`, wantErr: ledger.ErrBadPrice},
		{name: "1e400", body: `{"batch_size":1e400}`, wantErr: ledger.ErrBadPrice},
		{name: "beyond int64", body: `{"batch_size":99999999999999999999999999}`, wantErr: ledger.ErrBadPrice},
		{name: "beyond int64 string", body: `{"batch_size":"99999999999999999999999999"}`, wantErr: ledger.ErrBadPrice},
		{name: "MaxImages", body: `{"batch_size":10000}`, wantImages: 10000},
		{name: "MaxImages as a product", body: `{"batch_size":100,"n_iter":100}`, wantImages: 10000},
		{name: "above MaxImages", body: `{"batch_size":10001}`, wantErr: ledger.ErrBadPrice},
		{name: "product above MaxImages", body: `{"batch_size":100,"n_iter":101}`, wantErr: ledger.ErrBadPrice},
		{name: "product overflow", body: `{"batch_size":4294967296,"n_iter":4294967296}`, wantErr: ledger.ErrBadPrice},
		{name: "nested param", body: `{"checkpoint":{"modelId":"m"},"param":{"batch_size":4,"n_iter":2}}`, wantImages: 8},
		{name: "param string holding an object", body: `{"param":"{\"batch_size\":3}"}`, wantImages: 3},
		{name: "param string of junk", body: `{"param":"junk"}`, wantImages: 1},
		{name: "param string of a broken object", body: `{"param":"{\"batch_size\":3"}`, wantImages: 1},
		{name: "param array", body: `{"param":[{"batch_size":3}]}`, wantImages: 1},
		{name: "param null", body: `{"param":null,"n_iter":2}`, wantImages: 2},
		{name: "param nested twice is not read", body: `{"param":{"param":{"batch_size":9}}}`, wantImages: 1},
		{name: "param larger wins", body: `{"batch_size":2,"param":{"batch_size":4}}`, wantImages: 4},
		{name: "top level larger wins", body: `{"batch_size":4,"param":{"batch_size":2}}`, wantImages: 4},
		{name: "fields from both places", body: `{"batch_size":2,"param":{"n_iter":3}}`, wantImages: 6},
		{name: "bad value in param", body: `{"batch_size":2,"param":{"batch_size":-1}}`, wantErr: ledger.ErrBadPrice},
		{name: "keys match exactly", body: `{"Batch_Size":9,"batchSize":9}`, wantImages: 1},
		{name: "repeated key: the last one, as Python", body: `{"batch_size":2,"batch_size":5}`, wantImages: 5},
		{name: "truncated object", body: `{"batch_size":2`, wantErr: ledger.ErrBadPrice},
		{name: "trailing garbage", body: `{"batch_size":2} x`, wantErr: ledger.ErrBadPrice},
		{name: "NaN literal", body: `{"batch_size":NaN}`, wantErr: ledger.ErrBadPrice},
		{name: "per-image price", body: `{"batch_size":2}`, perImage: 3, wantImages: 2},
		{name: "per-image price of zero", body: `{}`, perImage: -1, wantErr: ledger.ErrBadPrice},
		{name: "credits overflow", body: `{"batch_size":2}`, perImage: ledger.MaxCredits, wantErr: ledger.ErrBadPrice},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			per := tc.perImage
			if per == 0 {
				per = 1
			}
			credits, images, err := ledger.ParsePrice([]byte(tc.body), per)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v (credits %d images %d)", err, tc.wantErr, credits, images)
				}
				if credits != 0 || images != 0 {
					t.Errorf("refusal with credits %d images %d", credits, images)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if images != tc.wantImages || credits != images*per {
				t.Fatalf("credits %d images %d, want images %d at %d", credits, images, tc.wantImages, per)
			}
		})
	}
}

func TestParsePriceMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		body   string
		wantIn string
	}{
		{name: "fraction", body: `{"batch_size":2.5}`, wantIn: "batch_size is 2.5, not a whole number"},
		{name: "negative in param", body: `{"param":{"n_iter":-3}}`, wantIn: "param.n_iter is -3, a negative number"},
		{name: "too many", body: `{"batch_size":200,"n_iter":200}`, wantIn: "40000 images requested, at most 10000"},
		{name: "word", body: `{"batch_size":"lots"}`, wantIn: `batch_size is "lots", not a number`},
		{name: "long value is clipped", body: `{"batch_size":"` + string(bytes.Repeat([]byte("x"), 500)) + `"}`, wantIn: "xxxxx…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ledger.ParsePrice([]byte(tc.body), 1)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantIn)) {
				t.Fatalf("err %v, want it to say %q", err, tc.wantIn)
			}
			if len(err.Error()) > 120 {
				t.Errorf("message of %d bytes is too long for a pop-up", len(err.Error()))
			}
		})
	}
}

// FuzzParsePrice checks ParsePrice's invariants, and its image count against
// refImages, a plainer statement of the same rules.
func FuzzParsePrice(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, perImage int64) {
		credits, images, err := ledger.ParsePrice(body, perImage)
		if err != nil {
			if !errors.Is(err, ledger.ErrBadPrice) {
				t.Fatalf("err %v is not ErrBadPrice", err)
			}
			if credits != 0 || images != 0 {
				t.Fatalf("refusal with credits %d images %d", credits, images)
			}
		} else {
			if images < 1 || images > ledger.MaxImages || perImage < 1 || credits != images*perImage || credits < perImage {
				t.Fatalf("credits %d images %d at %d per image", credits, images, perImage)
			}
		}
		want, ok := refImages(body)
		if perImage < 1 || perImage > ledger.MaxCredits || (ok && want > ledger.MaxCredits/perImage) {
			if err == nil {
				t.Fatalf("per-image price %d accepted", perImage)
			}
			return
		}
		if ok != (err == nil) || (ok && want != images) {
			t.Fatalf("images %d err %v; reference says %d ok %v", images, err, want, ok)
		}
	})
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// refImages is the reference image count: the body decoded as generic JSON.
func refImages(body []byte) (int64, bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return 1, true
	}
	top, ok := decodeObject(body)
	if !ok {
		return 0, false
	}
	var param map[string]any
	switch p := top["param"].(type) {
	case map[string]any:
		param = p
	case string:
		param, _ = decodeObject(bytes.TrimSpace([]byte(p)))
	}
	images := int64(1)
	for _, name := range []string{"batch_size", "n_iter"} {
		n := int64(1)
		for _, obj := range []map[string]any{top, param} {
			v, present := obj[name]
			if !present || v == nil {
				continue
			}
			var text string
			switch v := v.(type) {
			case json.Number:
				text = v.String()
			case string:
				if !jsonNumber.MatchString(v) {
					return 0, false
				}
				text = v
			default:
				return 0, false
			}
			f, err := strconv.ParseFloat(text, 64)
			if err != nil || f < 0 || f > ledger.MaxImages || f != math.Floor(f) {
				return 0, false
			}
			n = max(n, int64(f))
		}
		images *= n
	}
	return images, images <= ledger.MaxImages
}

// decodeObject decodes one JSON object, numbers as json.Number, with nothing
// but JSON white space around it.
func decodeObject(b []byte) (map[string]any, bool) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return m, true
}
