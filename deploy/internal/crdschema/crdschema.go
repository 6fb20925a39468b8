// Package crdschema validates custom resources against the schemas of their
// CustomResourceDefinitions as the projects publish them, with kubeconform's
// validator (github.com/yannh/kubeconform/pkg/validator).
//
// kubeconform validates JSON schemas, and CRDs carry OpenAPI v3 schemas: New
// converts the openAPIV3Schema of every served version the way kubeconform's
// scripts/openapi2jsonschema.py does, strictly (DENY_ROOT_ADDITIONAL_PROPERTIES):
// an object schema with properties and no additionalProperties admits no
// other field, and format int-or-string becomes a string or an integer. Two
// differences from the script keep it faithful to the API server: an object
// marked x-kubernetes-preserve-unknown-fields keeps its unknown fields, and
// the root always admits apiVersion, kind and metadata (some CRDs, NACK's
// among them, declare only spec and status). So an unknown field, a wrong
// type, a value outside an enum or a bound, a pattern mismatch or a missing
// required field is an error, as with the API server's strict field
// validation. CEL rules (x-kubernetes-validations) are not evaluated, and
// metadata is left to the caller, which decodes it into a metav1.ObjectMeta.
package crdschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Key names a served resource: "group/version Kind".
type Key string

// Validator checks custom resources of the kinds its CRDs define.
type Validator struct {
	v     validator.Validator
	kinds map[Key]bool
}

type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// New reads the CustomResourceDefinitions of the multi-document YAML streams
// crds, writes the JSON schema of every served version under dir (which the
// caller owns, typically t.TempDir()) and returns a validator that reads
// them from there, never from the network.
func New(dir string, crds ...io.Reader) (*Validator, error) {
	kinds := map[Key]bool{}
	for _, r := range crds {
		docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("crdschema: %w", err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var c crd
			if err := yaml.Unmarshal(doc, &c); err != nil {
				return nil, fmt.Errorf("crdschema: %w", err)
			}
			if c.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range c.Spec.Versions {
				if !v.Served || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				key := Key(c.Spec.Group + "/" + v.Name + " " + c.Spec.Names.Kind)
				if kinds[key] {
					return nil, fmt.Errorf("crdschema: %s is defined twice", key)
				}
				kinds[key] = true
				j, err := json.MarshalIndent(JSONSchema(v.Schema.OpenAPIV3Schema), "", "  ")
				if err != nil {
					return nil, fmt.Errorf("crdschema: %s: %w", key, err)
				}
				p := filepath.Join(dir, c.Spec.Group, strings.ToLower(c.Spec.Names.Kind)+"_"+v.Name+".json")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return nil, fmt.Errorf("crdschema: %w", err)
				}
				if err := os.WriteFile(p, j, 0o644); err != nil {
					return nil, fmt.Errorf("crdschema: %w", err)
				}
			}
		}
	}
	loc := filepath.Join(dir, "{{ .Group }}", "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")
	v, err := validator.New([]string{loc}, validator.Opts{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("crdschema: %w", err)
	}
	return &Validator{v: v, kinds: kinds}, nil
}

// Has reports whether a CRD defines key.
func (v *Validator) Has(key Key) bool { return v.kinds[key] }

// Validate checks one YAML or JSON document and returns every problem, each
// naming its field path. A kind no CRD defines is an error.
func (v *Validator) Validate(doc []byte) []error {
	res := v.v.ValidateResource(resource.Resource{Path: "manifest", Bytes: doc})
	switch res.Status {
	case validator.Valid:
		return nil
	case validator.Invalid:
		var errs []error
		for _, e := range res.ValidationErrors {
			errs = append(errs, fmt.Errorf("%s: %s", orRoot(e.Path), e.Msg))
		}
		if len(errs) == 0 {
			errs = append(errs, res.Err)
		}
		return errs
	case validator.Empty:
		return []error{errors.New("empty document")}
	}
	return []error{res.Err}
}

// JSONSchema returns the JSON schema of a CRD's openAPIV3Schema, converted as
// the package comment says. It does not modify s.
func JSONSchema(s map[string]any) map[string]any {
	out := convert(s).(map[string]any)
	props, _ := out["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
		out["properties"] = props
	}
	for k, t := range map[string]string{"apiVersion": "string", "kind": "string", "metadata": "object"} {
		if _, ok := props[k]; !ok {
			props[k] = map[string]any{"type": t}
		}
	}
	if _, ok := out["additionalProperties"]; !ok && out["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out
}

// convert copies v, closing every object schema with properties and
// replacing format int-or-string.
func convert(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v["format"] == "int-or-string" {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		}
		out := make(map[string]any, len(v)+1)
		for k, e := range v {
			out[k] = convert(e)
		}
		if _, ok := v["properties"].(map[string]any); ok {
			if _, ok := v["additionalProperties"]; !ok && v["x-kubernetes-preserve-unknown-fields"] != true {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = convert(e)
		}
		return out
	}
	return v
}

func orRoot(path string) string {
	if path == "" {
		return "."
	}
	return strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", ".")
}
