package loader

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// measurePtRegsOffset is where a task's saved user registers sit in its
// kernel stack: task_pt_regs(t) - t->stack, the same for every task of a
// kernel (THREAD_SIZE less the stack's top padding and the registers). The
// programs then find them with a load instead of a bpf_task_pt_regs call
// on every syscall that reads its arguments. Measured by running a
// program that asks the kernel, on this thread; 0 if it cannot run.
func measurePtRegsOffset() uint32 {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return 0
	}
	var task *btf.Struct
	if kernel.TypeByName("task_struct", &task) != nil {
		return 0
	}
	stack := -1
	for _, m := range task.Members {
		if m.Name == "stack" {
			stack = int(m.Offset.Bytes())
		}
	}
	if stack < 0 {
		return 0
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.RawTracepoint,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.FnGetCurrentTaskBtf.Call(),
			asm.Mov.Reg(asm.R6, asm.R0),
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.FnTaskPtRegs.Call(),
			// The registers' address and t->stack as numbers: the
			// verifier allows no arithmetic on the pointers.
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, -16),
			asm.Mov.Imm(asm.R2, 8),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -8),
			asm.FnProbeReadKernel.Call(),
			asm.LoadMem(asm.R7, asm.RFP, -16, asm.DWord),
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, -16),
			asm.Mov.Imm(asm.R2, 8),
			asm.Mov.Reg(asm.R3, asm.R6),
			asm.Add.Imm(asm.R3, int32(stack)),
			asm.FnProbeReadKernel.Call(),
			asm.LoadMem(asm.R0, asm.RFP, -16, asm.DWord),
			asm.Sub.Reg(asm.R7, asm.R0),
			asm.Mov.Reg(asm.R0, asm.R7),
			asm.Return(),
		},
	})
	if err != nil {
		return 0
	}
	defer prog.Close()
	off, err := prog.Run(&ebpf.RunOptions{})
	// A stack is 16 KiB or a few times that; anything else is not an
	// offset into one.
	if err != nil || off == 0 || off > 1<<20 {
		return 0
	}
	return off
}
