package crdschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

const testCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.com}
spec:
  group: example.com
  names: {kind: Thing}
  versions:
  - name: v1
    served: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [name]
            properties:
              name: {type: string, pattern: '^[a-z]+$'}
              mode: {type: string, enum: [fast, slow]}
              count: {type: integer, minimum: 1, maximum: 5}
              tags: {type: array, items: {type: string}}
              labels: {type: object, additionalProperties: {type: string}}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
              size: {x-kubernetes-int-or-string: true}
              enabled: {type: boolean}
  - name: v0
    served: false
    schema:
      openAPIV3Schema: {type: object}
`

func TestValidate(t *testing.T) {
	t.Parallel()
	schemas, err := Load(strings.NewReader(testCRD))
	if err != nil {
		t.Fatal(err)
	}
	if len(schemas) != 1 || schemas["example.com/v1 Thing"] == nil {
		t.Fatalf("schemas %v: want the served v1 only", schemas)
	}
	s := schemas["example.com/v1 Thing"]
	cases := []struct{ name, spec, wantErr string }{
		{"valid", `{"name":"a","mode":"fast","count":2,"tags":["x"],"labels":{"k":"v"},"free":{"any":[1]},"size":"1Gi","enabled":true}`, ""},
		{"int or string", `{"name":"a","size":3}`, ""},
		{"unknown field", `{"name":"a","nmae":"b"}`, `spec: unknown field "nmae"`},
		{"required", `{}`, `required field "name"`},
		{"pattern", `{"name":"A"}`, "does not match"},
		{"enum", `{"name":"a","mode":"medium"}`, "not one of"},
		{"integer", `{"name":"a","count":1.5}`, "want an integer"},
		{"minimum", `{"name":"a","count":0}`, "below the minimum"},
		{"maximum", `{"name":"a","count":6}`, "above the maximum"},
		{"array item", `{"name":"a","tags":[1]}`, "spec.tags[0]: want a string"},
		{"map value", `{"name":"a","labels":{"k":1}}`, "spec.labels.k: want a string"},
		{"boolean", `{"name":"a","enabled":"yes"}`, "want a boolean"},
		{"int or string type", `{"name":"a","size":true}`, "want an integer or a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var obj map[string]any
			dec := json.NewDecoder(bytes.NewReader([]byte(`{"apiVersion":"example.com/v1","kind":"Thing","metadata":{"name":"x"},"spec":` + c.spec + `}`)))
			dec.UseNumber()
			if err := dec.Decode(&obj); err != nil {
				t.Fatal(err)
			}
			errs := s.Validate(obj)
			if c.wantErr == "" {
				if len(errs) > 0 {
					t.Errorf("errors %v, want none", errs)
				}
				return
			}
			if !strings.Contains(fmt.Sprint(errs), c.wantErr) {
				t.Errorf("errors %v, want one containing %q", errs, c.wantErr)
			}
		})
	}
}
