package events

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of one line of fdtrace's
// output. Its descriptions are the field reference.
//
//go:embed records.schema.json
var Schema []byte
