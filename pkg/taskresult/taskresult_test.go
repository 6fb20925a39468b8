package taskresult_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/taskresult"
)

func ptr[T any](v T) *T { return &v }

func TestParseSNSMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		message  string
		want     taskresult.SNSResult // Problems and Context compared separately
		problems int
	}{
		{
			name: "seed example",
			message: `{"id":"task_id","result":true,"image_url":["s3://outputbucket/output/test-t2i/test-t2i-abcd-1.png"],` +
				`"output_url":"s3://outputbucket/output/test-t2i/test-t2i-abcd.out","context":{"abc":123}}`,
			want: taskresult.SNSResult{
				ID: "task_id", Status: taskresult.StatusCompleted, Result: ptr(true),
				ImageURLs: []string{"s3://outputbucket/output/test-t2i/test-t2i-abcd-1.png"},
				Images:    []taskresult.S3URI{{Bucket: "outputbucket", Key: "output/test-t2i/test-t2i-abcd-1.png"}},
				OutputURL: "s3://outputbucket/output/test-t2i/test-t2i-abcd.out",
			},
		},
		{
			name:    "old failure",
			message: `{"id":"t","result":false,"image_url":[],"output_url":"s3://b/t.out"}`,
			want:    taskresult.SNSResult{ID: "t", Status: taskresult.StatusFailed, Result: ptr(false), OutputURL: "s3://b/t.out"},
		},
		{
			name:    "newer running",
			message: `{"runtime":"sdruntime","id":"t","status":"running","context":{"account":"acc-1","job_id":"job-9"}}`,
			want:    taskresult.SNSResult{ID: "t", Runtime: "sdruntime", Status: taskresult.StatusRunning, Account: "acc-1", JobID: "job-9"},
		},
		{
			name:    "newer completed",
			message: `{"runtime":"sdruntime","id":"t","status":"completed","result":true,"image_url":["s3://b/k.png"]}`,
			want: taskresult.SNSResult{
				ID: "t", Runtime: "sdruntime", Status: taskresult.StatusCompleted, Result: ptr(true),
				ImageURLs: []string{"s3://b/k.png"}, Images: []taskresult.S3URI{{Bucket: "b", Key: "k.png"}},
			},
		},
		{
			name:     "status wins over result, noted",
			message:  `{"id":"t","status":"Failed","result":true}`,
			want:     taskresult.SNSResult{ID: "t", Status: taskresult.StatusFailed, Result: ptr(true)},
			problems: 1,
		},
		{
			name:    "numeric id",
			message: `{"id":1000000,"result":"true","context":{"job_id":12345678901234567890}}`,
			want:    taskresult.SNSResult{ID: "1000000", Status: taskresult.StatusCompleted, Result: ptr(true), JobID: "12345678901234567890"},
		},
		{
			name:    "exponent id",
			message: `{"id":1e6,"result":false}`,
			want:    taskresult.SNSResult{ID: "1000000", Status: taskresult.StatusFailed, Result: ptr(false)},
		},
		{
			name:    "context not an object",
			message: `{"id":"t","result":true,"context":"free text"}`,
			want:    taskresult.SNSResult{ID: "t", Status: taskresult.StatusCompleted, Result: ptr(true)},
		},
		{
			name:     "account not a string",
			message:  `{"id":"t","result":true,"context":{"account":42,"job_id":{"x":1}}}`,
			want:     taskresult.SNSResult{ID: "t", Status: taskresult.StatusCompleted, Result: ptr(true)},
			problems: 2,
		},
		{
			name:     "running with images",
			message:  `{"id":"t","status":"running","image_url":["s3://b/k"]}`,
			want:     taskresult.SNSResult{ID: "t", Status: taskresult.StatusRunning, ImageURLs: []string{"s3://b/k"}, Images: []taskresult.S3URI{{Bucket: "b", Key: "k"}}},
			problems: 1,
		},
		{
			name:     "bad image entries kept apart",
			message:  `{"id":"t","result":true,"image_url":["s3://b/k",7,"https://x/y","s3://b/"]}`,
			want:     taskresult.SNSResult{ID: "t", Status: taskresult.StatusCompleted, Result: ptr(true), ImageURLs: []string{"s3://b/k", "https://x/y", "s3://b/"}, Images: []taskresult.S3URI{{Bucket: "b", Key: "k"}}},
			problems: 3,
		},
		{
			name:     "unknown status falls back to result",
			message:  `{"id":"t","status":"queued","result":false}`,
			want:     taskresult.SNSResult{ID: "t", Status: taskresult.StatusFailed, Result: ptr(false)},
			problems: 1,
		},
		{
			name:     "nothing known",
			message:  `{}`,
			problems: 2,
		},
		{
			name:     "not JSON",
			message:  `Hello world`,
			problems: 1,
		},
		{
			name:     "array",
			message:  `[{"id":"t"}]`,
			problems: 1,
		},
		{
			name:     "wrong types everywhere",
			message:  `{"id":[1],"result":"maybe","status":3,"image_url":{"a":1},"output_url":1,"runtime":true}`,
			problems: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := taskresult.ParseSNSMessage(tt.message)
			if len(got.Problems) != tt.problems {
				t.Errorf("problems = %q, want %d", got.Problems, tt.problems)
			}
			got.Problems, got.Context = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseSNSMessageContextKept(t *testing.T) {
	t.Parallel()
	got := taskresult.ParseSNSMessage(`{"id":"t","status":"completed","context":{"abc":[1,2],"account":"a"}}`)
	if string(got.Context) != `{"abc":[1,2],"account":"a"}` || got.Account != "a" {
		t.Fatalf("context %s, account %q", got.Context, got.Account)
	}
}

func TestParseS3URI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want taskresult.S3URI
		err  error
	}{
		{"s3://outputbucket/output/a-1.png", taskresult.S3URI{Bucket: "outputbucket", Key: "output/a-1.png"}, nil},
		{"s3://b/k with space%20?#", taskresult.S3URI{Bucket: "b", Key: "k with space%20?#"}, nil},
		{"s3://Legacy_Bucket/k", taskresult.S3URI{Bucket: "Legacy_Bucket", Key: "k"}, nil},
		{"s3://b//k", taskresult.S3URI{Bucket: "b", Key: "/k"}, nil},
		{"s3://b", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"s3://b/", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"s3:///k", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"S3://b/k", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"https://b.s3.amazonaws.com/k", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"s3://user@b/k", taskresult.S3URI{}, taskresult.ErrNotS3URI},
		{"", taskresult.S3URI{}, taskresult.ErrNotS3URI},
	}
	for _, tt := range tests {
		got, err := taskresult.ParseS3URI(tt.in)
		if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) || got != tt.want {
			t.Errorf("ParseS3URI(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestNumberText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0", "0", true},
		{"-12", "-12", true},
		{"12345678901234567890123", "12345678901234567890123", true},
		{"1e6", "1000000", true},
		{"1E+6", "1000000", true},
		{"1000000.0", "1000000", true},
		{"1.5", "1.5", true},
		{"1e-3", "1e-3", true},
		{"1e100", "1e100", true},
		{"1e999999999", "1e999999999", true},
		{"1." + strings.Repeat("0", 30), "1", true},                          // 32 characters
		{"1." + strings.Repeat("0", 31), "", false},                          // 33: refused by length
		{"123456789012345678901234567890123", "", false},                     // 33 digits
		{" " + strings.Repeat("9", 32) + " ", strings.Repeat("9", 32), true}, // space is not counted
		{"abc", "", false},
		{"01", "", false},
		{`"1"`, "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := taskresult.NumberText(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NumberText(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseCallbackResult(t *testing.T) {
	t.Parallel()
	full := taskresult.CallbackImage{
		GeneratedImageID: "img-1", URL: "https://oss.example/img-1.png?Expires=1", Type: "png", ModelID: "m-1",
		CheckpointVersionID: "42", CheckpointName: "sd15", VAE: "auto", Loras: "lora-a", Infotexts: "steps: 20",
		Width: 512, Height: 768,
	}
	const fullJSON = `{"generatedImageId":"img-1","url":"https://oss.example/img-1.png?Expires=1","type":"png","modelId":"m-1",` +
		`"sdCheckpointVersionId":42,"sdCheckpointName":"sd15","sdVae":"auto","sdLoras":"lora-a","infotexts":"steps: 20",` +
		`"width":"512","height":768}`
	tests := []struct {
		name     string
		body     string
		want     taskresult.CallbackResult // Problems compared by count
		problems int
	}{
		{"object data", `{"success":true,"data":` + fullJSON + `}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{full}}, 0},
		{"list data", `{"success":"true","data":[` + fullJSON + `,{"generatedImageId":"img-2","width":512.0,"height":" 64 "}]}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{full, {GeneratedImageID: "img-2", Width: 512, Height: 64}}}, 0},
		{"failure without data", `{"success":false}`, taskresult.CallbackResult{}, 0},
		{"failure as string", `{"success":"False","data":null}`, taskresult.CallbackResult{}, 0},
		{"success without data", `{"success":true}`, taskresult.CallbackResult{Success: true}, 1},
		{"bad sizes", `{"success":true,"data":{"generatedImageId":"g","width":"512px","height":-1}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{GeneratedImageID: "g"}}}, 2},
		{"huge and fractional sizes", `{"success":true,"data":{"url":"u","width":1e12,"height":1.5}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{URL: "u"}}}, 2},
		{"object in a text field", `{"success":true,"data":{"generatedImageId":"g","sdLoras":[{"name":"a","weight":0.5}]}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{GeneratedImageID: "g", Loras: `[{"name":"a","weight":0.5}]`}}}, 1},
		{"non-object entries skipped", `{"success":true,"data":[1,"x",{"generatedImageId":7}]}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{GeneratedImageID: "7"}}}, 2},
		{"success missing", `{"data":{"url":"u"}}`, taskresult.CallbackResult{Images: []taskresult.CallbackImage{{URL: "u"}}}, 1},
		{"empty data object", `{"success":true,"data":{}}`, taskresult.CallbackResult{Success: true}, 0},
		{"entries naming no image", `{"success":true,"data":[{},{"type":"png","width":512},{"generatedImageId":null,"url":""},{"generatedImageId":"g"},{"url":"u"}]}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{GeneratedImageID: "g"}, {URL: "u"}}}, 2},
		{"success unreadable", `{"success":"yes"}`, taskresult.CallbackResult{}, 1},
		{"data a string", `{"success":true,"data":"img"}`, taskresult.CallbackResult{Success: true}, 1},
		{"empty body", ``, taskresult.CallbackResult{}, 1},
		{"not JSON", `success=true`, taskresult.CallbackResult{}, 1},
		{"text at the bound", `{"success":true,"data":{"url":"` + strings.Repeat("u", taskresult.MaxTextLen) + `"}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{URL: strings.Repeat("u", taskresult.MaxTextLen)}}}, 0},
		{"text beyond the bound", `{"success":true,"data":{"generatedImageId":"g","url":"` + strings.Repeat("u", taskresult.MaxTextLen+1) + `","type":"png"}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{GeneratedImageID: "g", Type: "png"}}}, 1},
		{"only a url beyond the bound", `{"success":true,"data":{"url":"` + strings.Repeat("u", taskresult.MaxTextLen+1) + `","type":"png"}}`,
			taskresult.CallbackResult{Success: true}, 2},
		{"escaped text beyond the bound", `{"success":true,"data":{"url":"u","infotexts":"` + strings.Repeat(`\u00e9`, taskresult.MaxTextLen/2+1) + `"}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{URL: "u"}}}, 1},
		{"long number", `{"success":true,"data":{"url":"u","sdCheckpointVersionId":` + strings.Repeat("7", 40) + `,"width":1.` + strings.Repeat("0", 40) + `}}`,
			taskresult.CallbackResult{Success: true, Images: []taskresult.CallbackImage{{URL: "u"}}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := taskresult.ParseCallbackResult([]byte(tt.body))
			if len(got.Problems) != tt.problems {
				t.Errorf("problems = %q, want %d", got.Problems, tt.problems)
			}
			got.Problems = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestProblemsQuoteNoValues: problems name fields, never their values, so
// they may be logged.
func TestProblemsQuoteNoValues(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-VALUE"
	r := taskresult.ParseSNSMessage(`{"id":["` + secret + `"],"status":"` + secret + `","image_url":["` + secret + `"],"context":{"account":{"k":"` + secret + `"}}}`)
	c := taskresult.ParseCallbackResult([]byte(`{"success":"` + secret + `","data":{"width":"` + secret + `","sdVae":{"k":"` + secret + `"}}}`))
	for _, p := range append(r.Problems, c.Problems...) {
		if strings.Contains(p, secret) {
			t.Errorf("problem quotes a value: %q", p)
		}
	}
}
