package events

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStatsWithMemoryMatchTheSchema(t *testing.T) {
	s := Stats{Type: "stats", Time: Time(time.Now()), Memory: &Memory{RSSBytes: 30 << 20, PeakRSSBytes: 40 << 20,
		MapBytes: 17 << 20, MapEntries: MapEntries{Procs: 3, FDs: 120, Errors: 1, Ports: 0, Stacks: 0, Traced: 2}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateBoth(t, b); err != nil {
		t.Errorf("%v\n%s", err, b)
	}
	bad := strings.Replace(string(b), `"traced":2`, `"traced":-2`, 1)
	if validateBoth(t, []byte(bad)) == nil {
		t.Errorf("Validate accepted %s", bad)
	}
}

func TestSchemaMemoryFieldsAreTheStructFields(t *testing.T) {
	var doc struct {
		Defs map[string]struct {
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema, &doc); err != nil {
		t.Fatal(err)
	}
	for def, v := range map[string]any{"memory": Memory{}, "map_entries": MapEntries{}} {
		// Every field is a property; those always written are required.
		var fields, always []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, opt, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, name)
			if opt != "omitempty" {
				always = append(always, name)
			}
		}
		slices.Sort(fields)
		slices.Sort(always)
		var props []string
		for p := range doc.Defs[def].Properties {
			props = append(props, p)
		}
		slices.Sort(props)
		required := slices.Sorted(slices.Values(doc.Defs[def].Required))
		if !slices.Equal(fields, props) || !slices.Equal(always, required) {
			t.Errorf("$defs/%s: properties %v, required %v; struct fields %v", def, props, required, fields)
		}
	}
}
