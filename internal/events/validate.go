package events

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

type schemas struct {
	whole  *jsonschema.Schema
	byType map[string]*jsonschema.Schema // $defs/<type>: one branch of the oneOf
}

var compiled = sync.OnceValues(func() (*schemas, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		return nil, fmt.Errorf("parsing records.schema.json: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "records.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("loading records.schema.json: %w", err)
	}
	s := &schemas{byType: map[string]*jsonschema.Schema{}}
	if s.whole, err = c.Compile(url); err != nil {
		return nil, fmt.Errorf("compiling records.schema.json: %w", err)
	}
	for _, r := range []Record{Open{}, Close{}, Error{}, Process{}, Stats{}, Leak{}, Snapshot{}, Budget{}} {
		typ := r.RecordType()
		if s.byType[typ], err = c.Compile(url + "#/$defs/" + typ); err != nil {
			return nil, fmt.Errorf("compiling records.schema.json, record %s: %w", typ, err)
		}
	}
	return s, nil
})

// Validate checks one line of fdtrace's output against Schema.
func Validate(line []byte) error {
	return validate(line, false)
}

// validate checks a line against the whole schema or, when the line names
// a known record type and whole is false, against that record's branch
// only: the same verdict, since exactly one branch can match a type, but
// an error that lists what is wrong with that record alone rather than
// why each of the other branches failed.
func validate(line []byte, whole bool) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not one JSON value: %w", err)
	}
	if obj, ok := v.(map[string]any); ok && !whole {
		if typ, ok := obj["type"].(string); ok && s.byType[typ] != nil {
			return s.byType[typ].Validate(v)
		}
	}
	return s.whole.Validate(v)
}
