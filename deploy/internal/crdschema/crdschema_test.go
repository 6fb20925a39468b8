package crdschema

import (
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
              free: {type: object, x-kubernetes-preserve-unknown-fields: true, properties: {known: {type: string}}}
              size: {format: int-or-string}
              enabled: {type: boolean}
  - name: v0
    served: false
    schema:
      openAPIV3Schema: {type: object}
`

func TestValidate(t *testing.T) {
	t.Parallel()
	v, err := New(t.TempDir(), strings.NewReader(testCRD))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Has("example.com/v1 Thing") || v.Has("example.com/v0 Thing") {
		t.Fatalf("kinds %v: want the served v1 only", v.kinds)
	}
	cases := []struct{ name, doc, wantErr string }{
		{"valid", `spec: {name: a, mode: fast, count: 2, tags: [x], labels: {k: v}, free: {any: [1], known: k}, size: 1Gi, enabled: true}`, ""},
		{"int or string", `spec: {name: a, size: 3}`, ""},
		{"unknown field", `spec: {name: a, nmae: b}`, "nmae"},
		{"unknown root field", `spec: {name: a}
sepc: {}`, "sepc"},
		{"required", `spec: {}`, "name"},
		{"pattern", `spec: {name: A}`, "does not match pattern"},
		{"enum", `spec: {name: a, mode: medium}`, "must be one of"},
		{"integer", `spec: {name: a, count: 1.5}`, "integer"},
		{"minimum", `spec: {name: a, count: 0}`, "minimum"},
		{"maximum", `spec: {name: a, count: 6}`, "maximum"},
		{"array item", `spec: {name: a, tags: [1]}`, "spec.tags.0"},
		{"map value", `spec: {name: a, labels: {k: 1}}`, "spec.labels.k"},
		{"boolean", `spec: {name: a, enabled: "yes"}`, "boolean"},
		{"int or string type", `spec: {name: a, size: true}`, "spec.size"},
		{"duplicate key", `spec: {name: a, name: b}`, "already"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			errs := v.Validate([]byte("apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\n" + c.doc + "\n"))
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
	if errs := v.Validate([]byte("apiVersion: example.com/v2\nkind: Thing\nmetadata: {name: x}\n")); len(errs) == 0 {
		t.Error("a version no CRD defines was accepted")
	}
}
