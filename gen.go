// Package fdtrace holds the BPF code generation step; the tool lives in
// cmd/fdtrace.
package fdtrace

//go:generate go tool bpf2go -cc ${BPF_CLANG} -strip ${BPF_STRIP} -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64 -type fd_event -type fd_path_event -type exit_event -type fd_key -type fd_info -type proc -type err_key -type syscall_id -type fd_type -type event_kind -type stat_id -type fd_flags -type stack -type port_key -type port_counts -type err_total_key -type port_total -type total_id -type exec_map -type exec_mappings -type cfa_rule -type raw_stack -type compat_bounds -type unwind_header -type unwind_page -type unwind_row -output-dir internal/bpfobj -go-package bpfobj Fdtrace bpf/fdtrace.bpf.c

// The same programs for kernels without bpf_loop, bpf_task_pt_regs and
// bpf_get_current_task_btf (5.10 to 5.16): see FDTRACE_COMPAT in bpf/.
//go:generate go tool bpf2go -cc ${BPF_CLANG} -strip ${BPF_STRIP} -cflags "-O2 -g -Wall -Werror -mcpu=v3 -DFDTRACE_COMPAT" -target amd64 -output-dir internal/bpfobj -go-package bpfobj FdtraceCompat bpf/fdtrace.bpf.c

// The Go types of the programs' enums that records name (Syscall, FDType).
//go:generate go run ./internal/tools/enumgen -o internal/events/enums_gen.go -package events internal/bpfobj/fdtrace_x86_bpfel.o
