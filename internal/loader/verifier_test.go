package loader

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// Other kernels and compilers may make the verifier work harder: each
// program, in its costliest configuration (stacks unwound by DWARF), must
// stay well within the verifier's limit of a million instructions, in
// every object and fallback this kernel can load.
func TestProgramsLeaveTheVerifierRoom(t *testing.T) {
	testutil.RequireRoot(t)
	const limit = 1_000_000
	for _, v := range objectVariants(t) {
		t.Run(v.name, func(t *testing.T) { programsLeaveTheVerifierRoom(t, v.feat, limit) })
	}
}

func programsLeaveTheVerifierRoom(t *testing.T, feat Features, limit int) {
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := feat.programSpec()
	if err != nil {
		t.Fatal(err)
	}
	cfg := costliestConfig
	cfg.CaptureStacks = feat.StacksError() == nil
	if err := configure(spec, cfg, feat); err != nil {
		t.Fatal(err)
	}
	processed := regexp.MustCompile(`processed (\d+) insns`)
	worst, worstName := 0, ""
	for name, ps := range spec.Programs {
		coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Maps: spec.Maps,
			Programs: map[string]*ebpf.ProgramSpec{name: ps}, Variables: spec.Variables, Types: spec.Types},
			ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			first, _, _ := strings.Cut(err.Error(), "\n")
			t.Errorf("%s: %s", name, first)
			continue
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

// objectVariant is a build and configuration of the programs that some
// kernel loads: each is tested on this one.
type objectVariant struct {
	name string
	feat Features
}

// objectVariants are the ones this kernel can load: the default programs,
// without bpf_rdonly_cast (6.1), and the compat programs (5.10 to 5.16).
func objectVariants(t *testing.T) []objectVariant {
	t.Helper()
	feat := ProbeFeatures()
	vs := []objectVariant{}
	if !feat.Compat() {
		noCast := feat
		noCast.RdonlyCast = false
		if feat.RdonlyCast {
			vs = append(vs, objectVariant{"default", feat})
		}
		vs = append(vs, objectVariant{"without bpf_rdonly_cast", noCast})
	}
	compat := feat
	compat.Loop, compat.TaskPtRegs, compat.TaskBTF = false, false, false
	return append(vs, objectVariant{"compat", compat})
}
