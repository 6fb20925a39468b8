package taskresult

import (
	"reflect"
	"strings"
	"testing"
)

// reference reads body with the reference parser, ParseCallbackResult,
// keeping what SummarizeCallbackResult returns.
func reference(body []byte) (bool, []ImageSummary) {
	r := ParseCallbackResult(body)
	var imgs []ImageSummary
	for _, img := range r.Images {
		imgs = append(imgs, ImageSummary{GeneratedImageID: img.GeneratedImageID, URL: img.URL, Type: img.Type, Width: img.Width, Height: img.Height})
	}
	return r.Success, imgs
}

// callbackBodies are plain bodies, read by the scanner, and bodies of every
// other shape, which it hands to the reference parser.
var callbackBodies = []struct {
	name  string
	body  string
	plain bool // read by the scanner, not the reference parser
}{
	{"one image", `{"success":true,"data":{"generatedImageId":"g","url":"https://img.example/g.png","type":"png","width":512,"height":512}}`, true},
	{"list", ` {"data":[{"generatedImageId":"a","width":0},{"url":"u","height":1024,"sdLoras":[{"x":"]}"}]}],"success":false}` + "\n", true},
	{"other fields", `{"code":0,"msg":"o\"k","success":true,"data":[{"modelId":{"a":[1,2,{"b":"}"}]},"type":"png","infotexts":null}],"extra":[1,{"a":null}]}`, true},
	{"nulls", `{"success":true,"data":null}`, true},
	{"no data", `{"success":false}`, true},
	{"empty list", `{"success":true,"data":[]}`, true},
	{"null fields", `{"success":true,"data":{"generatedImageId":null,"width":null}}`, true},
	{"unicode", `{"success":true,"data":{"url":"https://img.example/日本.png"}}`, true},
	{"empty data object", `{"success":true,"data":{}}`, true},
	{"entries naming no image", `{"success":true,"data":[{},{"type":"png","width":512},{"generatedImageId":null,"url":null},{"generatedImageId":"g"},{"url":"u"}]}`, true},
	{"string success", `{"success":"TRUE","data":{}}`, false},
	{"no success", `{"data":{"url":"u"}}`, false},
	{"escaped url", `{"success":true,"data":{"url":"https:\/\/img.example\/g.png"}}`, false},
	{"escaped key", `{"succ\u0065ss":true}`, false},
	{"duplicate key", `{"success":true,"success":false}`, false},
	{"duplicate field", `{"success":true,"data":{"url":"a","url":"b"}}`, false},
	{"string size", `{"success":true,"data":{"width":"512"}}`, false},
	{"float size", `{"success":true,"data":{"width":512.0}}`, false},
	{"exponent size", `{"success":true,"data":{"width":5e2}}`, false},
	{"negative size", `{"success":true,"data":{"width":-1}}`, false},
	{"huge size", `{"success":true,"data":{"width":99999999999}}`, false},
	{"leading zero", `{"success":true,"data":{"width":0512}}`, false},
	{"numeric id", `{"success":true,"data":{"generatedImageId":12345678901234567890}}`, false},
	{"entry not an object", `{"success":true,"data":[1,{"url":"u"}]}`, false},
	{"data a string", `{"success":true,"data":"x"}`, false},
	{"invalid utf-8", "{\"success\":true,\"data\":{\"url\":\"\xff\"}}", false},
	{"not json", `{"success":true`, false},
	{"trailing", `{"success":true} x`, false},
	{"array body", `[{"success":true}]`, false},
	{"empty", ``, false},
	{"long number", `{"success":true,"data":{"width":1.` + strings.Repeat("0", 200) + `,"url":"u"}}`, false},
	{"long integer", `{"success":true,"data":{"width":` + strings.Repeat("9", 200) + `}}`, false},
	{"long number elsewhere", `{"success":true,"seq":` + strings.Repeat("9", 200) + `,"data":{"url":"u"}}`, true},
	{"text at the bound", `{"success":true,"data":{"url":"` + strings.Repeat("u", MaxTextLen) + `"}}`, true},
	{"text beyond the bound", `{"success":true,"data":{"url":"` + strings.Repeat("u", MaxTextLen+1) + `","type":"png"}}`, false},
}

func TestSummarizeCallbackResultMatchesReference(t *testing.T) {
	t.Parallel()
	for _, tc := range callbackBodies {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, plain := scanCallback([]byte(tc.body))
			if plain != tc.plain {
				t.Errorf("plain %v, want %v", plain, tc.plain)
			}
			ok, imgs := SummarizeCallbackResult([]byte(tc.body))
			wantOK, wantImgs := reference([]byte(tc.body))
			if ok != wantOK || !reflect.DeepEqual(imgs, wantImgs) {
				t.Fatalf("got %v %+v, want %v %+v", ok, imgs, wantOK, wantImgs)
			}
		})
	}
}

// FuzzSummarizeCallbackResult: the scanner gives the reference parser's
// answer for every body it reads. Its seeds are callbackBodies and the corpus
// checked in under testdata/fuzz/FuzzSummarizeCallbackResult.
func FuzzSummarizeCallbackResult(f *testing.F) {
	for _, tc := range callbackBodies {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ok, imgs, plain := scanCallback(body)
		if !plain {
			return
		}
		wantOK, wantImgs := reference(body)
		if ok != wantOK || !reflect.DeepEqual(imgs, wantImgs) {
			t.Fatalf("%q: got %v %+v, want %v %+v", body, ok, imgs, wantOK, wantImgs)
		}
	})
}

func BenchmarkSummarizeCallbackResult(b *testing.B) {
	body := []byte(`{"success":true,"data":{"generatedImageId":"g","url":"https://img.example/g.png","type":"png","width":512,"height":512}}`)
	b.Run("scanner", func(b *testing.B) {
		for b.Loop() {
			SummarizeCallbackResult(body)
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			reference(body)
		}
	})
}
