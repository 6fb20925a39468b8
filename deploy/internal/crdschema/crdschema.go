// Package crdschema checks custom resources against the OpenAPI v3 schemas of
// their CustomResourceDefinitions, the way the Kubernetes API server does with
// strict field validation: an unknown field, a wrong type, a value outside an
// enum, a minimum or a maximum, or a missing required field is an error.
//
// It covers the structural-schema keywords that CRDs use (type, properties,
// additionalProperties, items, required, enum, minimum, maximum, pattern,
// x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string). CEL rules
// (x-kubernetes-validations) are not evaluated. metadata is left to the caller,
// which decodes it into a metav1.ObjectMeta.
package crdschema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Schema is one node of a CRD's openAPIV3Schema.
type Schema struct {
	Type                 string             `json:"type"`
	Properties           map[string]*Schema `json:"properties"`
	AdditionalProperties *Additional        `json:"additionalProperties"`
	Items                *Schema            `json:"items"`
	Required             []string           `json:"required"`
	Enum                 []any              `json:"enum"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	Pattern              string             `json:"pattern"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
}

// Additional is additionalProperties: a boolean or a schema.
type Additional struct {
	Allowed bool
	Schema  *Schema
}

// UnmarshalJSON reads a boolean or a schema.
func (a *Additional) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &a.Allowed); err == nil {
		return nil
	}
	a.Allowed = true
	return json.Unmarshal(b, &a.Schema)
}

// Key names a served resource: "group/version Kind".
type Key string

// Schemas maps each served version of each kind to its schema.
type Schemas map[Key]*Schema

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
				OpenAPIV3Schema *Schema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// Load reads the CustomResourceDefinitions of a multi-document YAML stream and
// returns the schema of every served version.
func Load(r io.Reader) (Schemas, error) {
	out := Schemas{}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var c crd
		if err := yaml.Unmarshal(doc, &c); err != nil {
			return nil, err
		}
		if c.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range c.Spec.Versions {
			if v.Served && v.Schema.OpenAPIV3Schema != nil {
				out[Key(c.Spec.Group+"/"+v.Name+" "+c.Spec.Names.Kind)] = v.Schema.OpenAPIV3Schema
			}
		}
	}
}

// Validate checks obj (decoded from JSON with UseNumber) against s and returns
// every problem, each naming its field path. The top-level apiVersion and
// kind are always allowed, as by the API server, and metadata is skipped.
func (s *Schema) Validate(obj map[string]any) []error {
	var errs []error
	s.validate("", obj, &errs, true)
	return errs
}

func (s *Schema) validate(path string, v any, errs *[]error, root bool) {
	bad := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{orRoot(path)}, args...)...))
	}
	if s.IntOrString {
		switch v.(type) {
		case json.Number, string:
		default:
			bad("want an integer or a string, got %T", v)
		}
		return
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("required field %q is missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
				continue // always allowed; metadata is the caller's
			}
			switch p, ok := s.Properties[k]; {
			case ok:
				p.validate(path+"."+k, m[k], errs, false)
			case s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
				s.AdditionalProperties.Schema.validate(path+"."+k, m[k], errs, false)
			case s.PreserveUnknown || (s.AdditionalProperties != nil && s.AdditionalProperties.Allowed):
			default:
				bad("unknown field %q", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return
		}
		if s.Items != nil {
			for i, e := range a {
				s.Items.validate(fmt.Sprintf("%s[%d]", path, i), e, errs, false)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return
		}
		if s.Pattern != "" {
			if re, err := regexp.Compile(s.Pattern); err == nil && !re.MatchString(str) {
				bad("%q does not match %s", str, s.Pattern)
			}
		}
		s.checkEnum(str, bad)
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			bad("want a number, got %T", v)
			return
		}
		f, err := n.Float64()
		if err != nil || (s.Type == "integer" && strings.ContainsAny(n.String(), ".eE")) {
			bad("want an integer, got %s", n)
			return
		}
		if s.Minimum != nil && f < *s.Minimum {
			bad("%s is below the minimum %v", n, *s.Minimum)
		}
		if s.Maximum != nil && f > *s.Maximum {
			bad("%s is above the maximum %v", n, *s.Maximum)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	case "":
		// No type: anything (for example a schema that is only anyOf).
	default:
		bad("schema type %q is not supported", s.Type)
	}
}

func (s *Schema) checkEnum(v string, bad func(string, ...any)) {
	if len(s.Enum) == 0 {
		return
	}
	if !slices.ContainsFunc(s.Enum, func(e any) bool { return e == v }) {
		bad("%q is not one of %v", v, s.Enum)
	}
}

func orRoot(path string) string {
	if path == "" {
		return "."
	}
	return strings.TrimPrefix(path, ".")
}
