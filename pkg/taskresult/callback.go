package taskresult

import (
	"encoding/json"
	"fmt"
)

// CallbackImage is one generated image of an sdTaskFinished or sdJobFinished
// body. Text fields hold strings as sent, numbers as NumberText and objects
// or arrays as compact JSON (with a problem noted); "" when absent, and when
// longer than MaxTextLen (a string) or MaxNumberLen (a number), with a
// problem noted.
type CallbackImage struct {
	GeneratedImageID    string // generatedImageId
	URL                 string // url (valid for 5 hours)
	Type                string // type, e.g. "png"
	ModelID             string // modelId
	CheckpointVersionID string // sdCheckpointVersionId
	CheckpointName      string // sdCheckpointName
	VAE                 string // sdVae
	Loras               string // sdLoras
	Infotexts           string // infotexts
	// Width and Height are the image size in pixels, read from a number or a
	// numeric string; 0 when absent or invalid.
	Width  int
	Height int
}

// CallbackResult is what ParseCallbackResult could read.
type CallbackResult struct {
	// Success is "success" (a bool, or "true"/"false"); false when absent or
	// unreadable, with a problem noted.
	Success bool
	// Images are the entries of "data", an object or a list of objects, in
	// order, that name an image: a generatedImageId or a url (as read: one
	// beyond MaxTextLen does not count). Entries that are not objects, and
	// objects that name no image (data {}), are skipped.
	Images []CallbackImage
	// Problems lists what was missing or unexpected.
	Problems []string
}

// callbackTextFields maps the JSON keys of an image to its text fields.
var callbackTextFields = []struct {
	key string
	get func(*CallbackImage) *string
}{
	{"generatedImageId", func(i *CallbackImage) *string { return &i.GeneratedImageID }},
	{"url", func(i *CallbackImage) *string { return &i.URL }},
	{"type", func(i *CallbackImage) *string { return &i.Type }},
	{"modelId", func(i *CallbackImage) *string { return &i.ModelID }},
	{"sdCheckpointVersionId", func(i *CallbackImage) *string { return &i.CheckpointVersionID }},
	{"sdCheckpointName", func(i *CallbackImage) *string { return &i.CheckpointName }},
	{"sdVae", func(i *CallbackImage) *string { return &i.VAE }},
	{"sdLoras", func(i *CallbackImage) *string { return &i.Loras }},
	{"infotexts", func(i *CallbackImage) *string { return &i.Infotexts }},
}

// ParseCallbackResult reads body, the request body of an sdTaskFinished or
// sdJobFinished callback: {success, data} with data an object or a list of
// objects {generatedImageId, url, type, modelId, sdCheckpointVersionId,
// sdCheckpointName, sdVae, sdLoras, infotexts, width, height}; an entry is
// an image only when it has a generatedImageId or a url. It never fails: an
// unreadable body gives a CallbackResult with only Problems set.
func ParseCallbackResult(body []byte) CallbackResult {
	var r CallbackResult
	note := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	m, ok := object(body)
	if !ok {
		note("body is not a JSON object")
		return r
	}
	if raw, ok := m["success"]; !ok {
		note("success is missing")
	} else if b, ok := boolean(raw); ok {
		r.Success = b
	} else {
		note("success is not a boolean")
	}

	raw := m["data"]
	var entries []json.RawMessage
	switch kind(raw) {
	case "object":
		entries = []json.RawMessage{raw}
	case "array":
		if err := json.Unmarshal(raw, &entries); err != nil {
			note("data is unreadable")
		}
	case "", "null":
		if r.Success {
			note("data is missing")
		}
	default:
		note("data is a %s", kind(raw))
	}
	for i, e := range entries {
		obj, ok := object(e)
		if !ok {
			note("data[%d] is a %s", i, kind(e))
			continue
		}
		var img CallbackImage
		for _, f := range callbackTextFields {
			v, ok := text(obj[f.key])
			*f.get(&img) = v
			if !ok {
				note("data[%d].%s %s", i, f.key, describe(obj[f.key]))
			}
		}
		var okW, okH bool
		img.Width, okW = dimension(obj["width"])
		img.Height, okH = dimension(obj["height"])
		if !okW {
			note("data[%d].width is not a size", i)
		}
		if !okH {
			note("data[%d].height is not a size", i)
		}
		if img.GeneratedImageID == "" && img.URL == "" {
			// An empty object is how a result says it has no image.
			if len(obj) > 0 {
				note("data[%d] names no image", i)
			}
			continue
		}
		r.Images = append(r.Images, img)
	}
	return r
}
