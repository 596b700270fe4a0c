package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
)

// Every count of something lost or unrecorded is said, by its name in the
// stats record, once it is not 0; nothing is said while all are 0.
func TestEveryLossTheStatsCountIsSaid(t *testing.T) {
	notLosses := map[string]bool{"type": true, "time": true, "kernel_drift": true, "seeded_fds": true,
		"reconciled_fds": true, "skipped_hooks": true, "events_delivered": true, "memory": true,
		"output_dropped": true} // said by trace, which alone writes a file
	if notes := lossNotes(events.Stats{}); len(notes) != 0 {
		t.Errorf("notes without losses: %q", notes)
	}
	typ := reflect.TypeFor[events.Stats]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if notLosses[name] {
			continue
		}
		var st events.Stats
		reflect.ValueOf(&st).Elem().Field(i).SetUint(7)
		notes := lossNotes(st)
		if len(notes) != 1 || !strings.Contains(notes[0], "("+name+")") || !strings.Contains(notes[0], "7") {
			t.Errorf("%s = 7: notes %q, want one naming it", name, notes)
		}
		if losses(st) != 7 {
			t.Errorf("%s = 7: losses %d", name, losses(st))
		}
	}
}
