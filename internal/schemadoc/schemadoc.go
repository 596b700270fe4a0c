// Package schemadoc renders the JSON Schema of fdtrace's records
// (internal/events/records.schema.json) as the field tables of
// docs/records.md: a table per record type, then the shared objects and
// the named lists of values the records refer to.
package schemadoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// node is the part of a JSON Schema that the tables show.
type node struct {
	Ref                  string           `json:"$ref"`
	Description          string           `json:"description"`
	Type                 json.RawMessage  `json:"type"` // a name or a list of names
	Format               string           `json:"format"`
	Const                json.RawMessage  `json:"const"`
	Enum                 []any            `json:"enum"`
	Items                *node            `json:"items"`
	Properties           properties       `json:"properties"`
	Required             []string         `json:"required"`
	AdditionalProperties json.RawMessage  `json:"additionalProperties"` // false or a schema
	PropertyNames        *node            `json:"propertyNames"`
	OneOf                []node           `json:"oneOf"`
	Defs                 map[string]*node `json:"$defs"`
}

// properties keeps the schema's order of an object's properties.
type properties struct {
	names []string
	nodes map[string]*node
}

func (p *properties) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	p.nodes = map[string]*node{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string)
		n := new(node)
		if err := dec.Decode(n); err != nil {
			return fmt.Errorf("property %s: %w", name, err)
		}
		p.names = append(p.names, name)
		p.nodes[name] = n
	}
	return nil
}

// renderer turns one schema into markdown.
type renderer struct {
	defs map[string]*node
	// sections are the $defs with a section of their own, in the order
	// they are first referred to; queued marks them.
	sections []string
	queued   map[string]bool
	records  map[string]bool
}

// Markdown renders the schema's record types, in the order of its oneOf,
// then the definitions they refer to that have fields of their own or a
// list of values.
func Markdown(schema []byte) (string, error) {
	var root node
	if err := json.Unmarshal(schema, &root); err != nil {
		return "", fmt.Errorf("reading the schema: %w", err)
	}
	if len(root.OneOf) == 0 {
		return "", errors.New("the schema has no oneOf of record types")
	}
	r := &renderer{defs: root.Defs, queued: map[string]bool{}, records: map[string]bool{}}
	var names []string
	for _, ref := range root.OneOf {
		name, err := r.defName(ref.Ref)
		if err != nil {
			return "", err
		}
		names = append(names, name)
		r.records[name] = true
	}
	var b strings.Builder
	b.WriteString("Record types:")
	for i, name := range names {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s [%s](#%s)", sep, name, name)
	}
	b.WriteString(".\n")
	for _, name := range names {
		if err := r.section(&b, name); err != nil {
			return "", err
		}
	}
	// Rendering a section can queue more.
	for i := 0; i < len(r.sections); i++ {
		if err := r.section(&b, r.sections[i]); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

func (r *renderer) defName(ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok || r.defs[name] == nil {
		return "", fmt.Errorf("reference %q: not a definition of the schema", ref)
	}
	return name, nil
}

// ownSection says whether a definition gets a section of its own: one
// with fields, or a list of values.
func ownSection(n *node) bool {
	return len(n.Properties.names) > 0 || len(n.Enum) > 0
}

// section writes one definition: its description, then its fields or
// values.
func (r *renderer) section(b *strings.Builder, name string) error {
	n := r.defs[name]
	fmt.Fprintf(b, "\n## %s\n\n", name)
	if n.Description != "" {
		b.WriteString(n.Description + "\n")
	}
	if len(n.Enum) > 0 {
		b.WriteString("\nValues: " + values(n.Enum) + ".\n")
		return nil
	}
	b.WriteString("\n| field | type | always there | description |\n| --- | --- | --- | --- |\n")
	return r.fields(b, "", n)
}

// fields writes a row per property of n, and rows for the properties of
// objects nested in it, named prefix.field.
func (r *renderer) fields(b *strings.Builder, prefix string, n *node) error {
	required := map[string]bool{}
	for _, name := range n.Required {
		required[name] = true
	}
	for _, name := range n.Properties.names {
		p := n.Properties.nodes[name]
		typ, err := r.typeOf(p)
		if err != nil {
			return fmt.Errorf("%s%s: %w", prefix, name, err)
		}
		desc, err := r.description(p)
		if err != nil {
			return fmt.Errorf("%s%s: %w", prefix, name, err)
		}
		always := "no"
		if required[name] {
			always = "yes"
		}
		fmt.Fprintf(b, "| `%s%s` | %s | %s | %s |\n", prefix, name, cell(typ), always, cell(desc))
		switch {
		case len(p.Properties.names) > 0:
			if err := r.fields(b, prefix+name+".", p); err != nil {
				return err
			}
		case p.Items != nil && len(p.Items.Properties.names) > 0:
			if err := r.fields(b, prefix+name+"[].", p.Items); err != nil {
				return err
			}
		}
	}
	return nil
}

// description is a property's own description, or else that of the
// definition it refers to.
func (r *renderer) description(n *node) (string, error) {
	if n.Description != "" || n.Ref == "" {
		return n.Description, nil
	}
	name, err := r.defName(n.Ref)
	if err != nil {
		return "", err
	}
	return r.defs[name].Description, nil
}

// typeOf names the type of a value: a JSON type, a constant, a list of
// values, or a link to the section of the definition it refers to.
func (r *renderer) typeOf(n *node) (string, error) {
	if n.Ref != "" {
		name, err := r.defName(n.Ref)
		if err != nil {
			return "", err
		}
		def := r.defs[name]
		if !ownSection(def) {
			return r.typeOf(def)
		}
		if !r.queued[name] && !r.records[name] {
			r.queued[name] = true
			r.sections = append(r.sections, name)
		}
		kind := "object"
		if len(def.Enum) > 0 {
			kind = "string"
		}
		return fmt.Sprintf("%s ([%s](#%s))", kind, name, name), nil
	}
	switch {
	case len(n.Const) > 0:
		return "`" + string(n.Const) + "`", nil
	case len(n.Enum) > 0:
		return values(n.Enum), nil
	}
	var names []string
	if len(n.Type) > 0 {
		var one string
		if err := json.Unmarshal(n.Type, &one); err == nil {
			names = []string{one}
		} else if err := json.Unmarshal(n.Type, &names); err != nil {
			return "", fmt.Errorf("type %s: %w", n.Type, err)
		}
	}
	if len(names) == 0 {
		return "", errors.New("no type, $ref, const or enum")
	}
	typ := strings.Join(names, " or ")
	switch {
	case n.Format != "":
		typ += " (" + n.Format + ")"
	case names[0] == "array" && n.Items != nil:
		if len(n.Items.Properties.names) > 0 {
			return "array of objects", nil
		}
		item, err := r.typeOf(n.Items)
		if err != nil {
			return "", err
		}
		// "array of object ([frame](#frame))" reads better without "object".
		typ = "array of " + strings.TrimSuffix(strings.TrimPrefix(item, "object ("), ")")
	case names[0] == "object" && len(n.Properties.names) == 0:
		var value node
		if err := json.Unmarshal(n.AdditionalProperties, &value); err != nil {
			break // false, or absent: an object with no fields named here
		}
		key := "string"
		if n.PropertyNames != nil && (n.PropertyNames.Ref != "" || len(n.PropertyNames.Enum) > 0) {
			k, err := r.typeOf(n.PropertyNames)
			if err != nil {
				return "", err
			}
			key = k
		}
		v, err := r.typeOf(&value)
		if err != nil {
			return "", err
		}
		typ = "object: " + key + " → " + v
	}
	return typ, nil
}

// values lists enum values as code: `a`, `b` or `c`.
func values(enum []any) string {
	var vs []string
	for _, v := range enum {
		b, _ := json.Marshal(v)
		s := string(b)
		if str, ok := v.(string); ok {
			s = str
		}
		vs = append(vs, "`"+s+"`")
	}
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// cell makes text fit in a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
