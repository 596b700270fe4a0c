package loader

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Other kernels and compilers may make the verifier work harder: each
// program, in its costliest configuration (stacks unwound by DWARF), must
// stay well within the verifier's limit of a million instructions.
func TestProgramsLeaveTheVerifierRoom(t *testing.T) {
	testutil.RequireRoot(t)
	const limit = 1_000_000
	spec, err := loadFdtrace()
	if err != nil {
		t.Fatal(err)
	}
	if err := configure(spec, costliestConfig); err != nil {
		t.Fatal(err)
	}
	processed := regexp.MustCompile(`processed (\d+) insns`)
	worst, worstName := 0, ""
	for name, ps := range spec.Programs {
		coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Maps: spec.Maps,
			Programs: map[string]*ebpf.ProgramSpec{name: ps}, Variables: spec.Variables, Types: spec.Types},
			ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m := processed.FindStringSubmatch(coll.Programs[name].VerifierLog)
		coll.Close()
		if m == nil {
			t.Fatalf("%s: no instruction count in the verifier log", name)
		}
		if n, _ := strconv.Atoi(m[1]); n > worst {
			worst, worstName = n, name
		}
	}
	t.Logf("costliest program: %s, %d instructions processed", worstName, worst)
	if worst > limit/4 {
		t.Errorf("%s: the verifier processed %d instructions, more than a quarter of its limit", worstName, worst)
	}
}
