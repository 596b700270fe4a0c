package events

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func snapshotRecords() []Record {
	ts := Time(time.Date(2026, 11, 24, 18, 32, 26, 893436957, time.UTC))
	three, seven := uint64(3), uint64(7)
	return []Record{
		Snapshot{Type: "snapshot", Time: ts, PID: 42, Comm: "api", OpenFDs: 9, FDLimit: 1024, FDLimitHard: 524288,
			Utilization: Utilization(9, 1024), Level: Level(Utilization(9, 1024)),
			ByType:    map[string]int{"socket": 6, "file": 2, "epoll": 1},
			FileKinds: map[string]int{"regular": 1, "char_device": 1},
			Sockets: []SocketCount{{Family: "AF_INET", Protocol: "tcp", State: "ESTABLISHED", Count: 5},
				{Family: "unknown", Protocol: "", Count: 1}},
			UnixSocketsFrom: "sock_diag",
			Listening: []Listener{{Protocol: "tcp", Address: "0.0.0.0:8080", Port: 8080, FD: 3, Queue: &three, QueueMax: &seven, Accepted: 2},
				{Protocol: "unix", Address: "/run/api.sock", FD: 4}},
			Inbound:     []PortCount{{Port: 8080, Count: 2}},
			Outbound:    []EndpointCount{{Endpoint: "10.0.0.5:5432", Count: 3}},
			Directories: []DirCount{{Dir: "/var/log", Count: 1}},
			ListenDrops: 4, ListenOverflows: 4},
		Snapshot{Type: "snapshot", Time: ts, PID: 43, Comm: "idle", Level: "ok", ByType: map[string]int{},
			FileKinds: map[string]int{}, Sockets: []SocketCount{}, Listening: []Listener{}, Inbound: []PortCount{},
			Outbound: []EndpointCount{}, Directories: []DirCount{}},
		Budget{Type: "budget", Time: ts, PID: 42, Comm: "api", DurationS: 60, IntervalS: 0.2, Samples: 301,
			Components: []BudgetComponent{{Name: "inbound", Peak: 140, Baseline: 2, Ports: map[int]int{8080: 120, 9090: 20}},
				{Name: "outbound", Endpoint: "10.0.0.5:5432", Peak: 100}, {Name: "files", Peak: 12, Baseline: 10},
				{Name: "pipes", Peak: 2, Baseline: 2}, {Name: "other", Peak: 3, Baseline: 3}},
			Baseline: 17, PeakOpenFDs: 240, PeakTotal: 257, Margin: 1.5, WithMargin: 386, RecommendedLimit: 16384,
			CurrentLimit: 1024, CurrentLimitHard: 524288, Settings: map[string]string{"systemd": "LimitNOFILE=16384:524288",
				"docker": "--ulimit nofile=16384:524288", "docker_compose": "ulimits:", "shell": "ulimit -Sn 16384"}},
	}
}

func TestSnapshotAndBudgetRecordsMatchTheSchema(t *testing.T) {
	for _, r := range snapshotRecords() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(b); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
		var got struct{ Type string }
		if json.Unmarshal(b, &got); got.Type != r.RecordType() {
			t.Errorf("%T marshals type %q, want %q", r, got.Type, r.RecordType())
		}
	}
}

func TestSnapshotSchemaRejectsWhatTheCommandsNeverWrite(t *testing.T) {
	b, _ := json.Marshal(snapshotRecords()[0])
	good := string(b)
	for name, line := range map[string]string{
		"an unknown level":            strings.Replace(good, `"level":"ok"`, `"level":"fine"`, 1),
		"a count by an unknown type":  strings.Replace(good, `"epoll":1`, `"epolls":1`, 1),
		"an unknown file kind":        strings.Replace(good, `"regular":1`, `"plain":1`, 1),
		"an inbound port of 0":        strings.Replace(good, `"inbound":[{"port":8080`, `"inbound":[{"port":0`, 1),
		"a listener of UDP":           strings.Replace(good, `{"protocol":"tcp","address"`, `{"protocol":"udp","address"`, 1),
		"a snapshot without by_type":  strings.Replace(good, `"by_type":`, `"by_types":`, 1),
		"a socket count of 0":         strings.Replace(good, `"count":5`, `"count":0`, 1),
		"unix sockets from elsewhere": strings.Replace(good, `"unix_sockets_from":"sock_diag"`, `"unix_sockets_from":"ss"`, 1),
		"a budget with a margin < 1":  `{"type":"budget","margin":0.5}`,
		"a budget without components": `{"type":"budget"}`,
	} {
		if Validate([]byte(line)) == nil {
			t.Errorf("%s: accepted %s", name, line)
		}
	}
}

// TestSnapshotSchemaFieldsAreTheStructFields checks each object of the two
// records, nested ones too, against the struct that writes it.
func TestSnapshotSchemaFieldsAreTheStructFields(t *testing.T) {
	var doc struct {
		Defs map[string]json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(Schema, &doc); err != nil {
		t.Fatal(err)
	}
	type object struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
		Items      json.RawMessage            `json:"items"`
	}
	decode := func(raw json.RawMessage) object {
		var o object
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	var check func(path string, o object, rt reflect.Type)
	check = func(path string, o object, rt reflect.Type) {
		var fields, required []string
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields = append(fields, name)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				check(path+"."+name, decode(decode(o.Properties[name]).Items), ft.Elem())
			}
		}
		props := slices.Sorted(func(yield func(string) bool) {
			for k := range o.Properties {
				if !yield(k) {
					return
				}
			}
		})
		slices.Sort(fields)
		if !slices.Equal(fields, props) {
			t.Errorf("%s: schema properties %v, struct fields %v", path, props, fields)
		}
		slices.Sort(required)
		if got := slices.Sorted(slices.Values(o.Required)); !slices.Equal(got, required) {
			t.Errorf("%s: schema requires %v, struct always writes %v", path, got, required)
		}
	}
	for _, r := range []Record{Snapshot{}, Budget{}} {
		raw, ok := doc.Defs[r.RecordType()]
		if !ok {
			t.Fatalf("schema has no $defs/%s", r.RecordType())
		}
		check(r.RecordType(), decode(raw), reflect.TypeOf(r))
	}
}

func TestLevelThresholds(t *testing.T) {
	for u, want := range map[float64]string{0: "ok", 0.6999: "ok", 0.70: "warning", 0.8499: "warning", 0.85: "critical", 1.2: "critical"} {
		if got := Level(u); got != want {
			t.Errorf("Level(%v) = %q, want %q", u, got, want)
		}
	}
}
