package loader

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

// classicStackLimit is the verifier's combined stack limit through a call
// chain on kernels without private BPF stacks (all LTS kernels).
const classicStackLimit = 512

// Every program of both objects, through its deepest chain of calls and
// bpf_loop callbacks, fits the classic 512-byte stack, whatever the kernel
// running the test allows: some builds give each subprogram a private
// stack and would let through what every LTS kernel refuses. The frames
// are measured from the instructions, as the verifier measures them.
func TestEveryCallChainFitsTheClassicStackLimit(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){
		"default": bpfobj.LoadFdtrace, "compat": bpfobj.LoadFdtraceCompat,
	} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		worst, worstChain := 0, ""
		for _, ps := range spec.Programs {
			if depth, chain := deepestChain(ps.Instructions); depth > worst {
				worst, worstChain = depth, chain
			}
		}
		t.Logf("%s: deepest chain %s: %d bytes", name, worstChain, worst)
		if worst > classicStackLimit {
			t.Errorf("%s: %s needs %d bytes of stack, over the classic limit of %d", name, worstChain, worst, classicStackLimit)
		}
	}
}

// deepestChain follows calls and callback references from the program's
// entry, each frame rounded up to 32 bytes as the verifier counts it.
func deepestChain(insns asm.Instructions) (int, string) {
	entry := ""
	frame := map[string]int{}
	calls := map[string][]string{}
	fn := ""
	var ptr map[asm.Register]int16 // registers holding r10 + offset
	for _, ins := range insns {
		if sym := ins.Symbol(); sym != "" {
			fn = sym
			if entry == "" {
				entry = sym
			}
			ptr = map[asm.Register]int16{}
		}
		if ins.IsFunctionCall() || ins.IsLoadOfFunctionPointer() {
			calls[fn] = append(calls[fn], ins.Reference())
		}
		if off, ok := stackOffset(ins, ptr); ok && -off > frame[fn] {
			frame[fn] = -off
		}
	}
	var walk func(name string, depth int) (int, string)
	walk = func(name string, depth int) (int, string) {
		best, bestChain := 0, ""
		if depth < 8 { // recursion is refused by the verifier anyway
			for _, callee := range calls[name] {
				if d, c := walk(callee, depth+1); d > best {
					best, bestChain = d, c
				}
			}
		}
		return (max(frame[name], 1)+31)/32*32 + best, strings.TrimSuffix(name+" > "+bestChain, " > ")
	}
	return walk(entry, 0)
}

// stackOffset is the lowest stack offset ins reaches (negative), tracking
// registers that point into the stack in ptr.
func stackOffset(ins asm.Instruction, ptr map[asm.Register]int16) (int, bool) {
	op := ins.OpCode
	switch {
	case op.Class().IsLoad() && op.Mode() == asm.MemMode:
		if base, ok := stackBase(ins.Src, ptr); ok {
			delete(ptr, ins.Dst)
			return base + int(ins.Offset), true
		}
		delete(ptr, ins.Dst)
	case op.Class().IsStore() && op.Mode() == asm.MemMode:
		if base, ok := stackBase(ins.Dst, ptr); ok {
			return base + int(ins.Offset), true
		}
	case op.Class().IsALU():
		switch {
		case op.ALUOp() == asm.Mov && op.Source() == asm.RegSource && op.Class() == asm.ALU64Class:
			if base, ok := stackBase(ins.Src, ptr); ok {
				ptr[ins.Dst] = int16(base)
				return 0, false
			}
		case op.ALUOp() == asm.Add && op.Source() == asm.ImmSource && op.Class() == asm.ALU64Class:
			if base, ok := ptr[ins.Dst]; ok {
				ptr[ins.Dst] = base + int16(ins.Constant)
				return int(ptr[ins.Dst]), true
			}
		}
		delete(ptr, ins.Dst)
	case op.JumpOp() == asm.Call:
		for r := asm.R0; r <= asm.R5; r++ {
			delete(ptr, r)
		}
	case op.IsDWordLoad():
		delete(ptr, ins.Dst)
	}
	return 0, false
}

func stackBase(r asm.Register, ptr map[asm.Register]int16) (int, bool) {
	if r == asm.R10 {
		return 0, true
	}
	off, ok := ptr[r]
	return int(off), ok
}
