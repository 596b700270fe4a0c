# fdtrace build. `make generate` needs the pinned clang; `make build` needs only Go.
CLANG ?= clang-19
CLANG_FORMAT ?= clang-format-19
STRIP ?= llvm-strip-19
GO ?= go

.PHONY: test-fuzz build generate check-generated check-format vmlinux docs test test-host test-kernels bench clean

build:
	CGO_ENABLED=0 $(GO) build -o fdtrace ./cmd/fdtrace

generate:
	@$(CLANG) --version | head -1 | grep -q 'version 19\.' || { echo "make generate needs clang 19 ($(CLANG)): apt-get install clang-19 llvm-19 libbpf-dev"; exit 1; }
	BPF_CLANG=$(CLANG) BPF_STRIP=$(STRIP) $(GO) generate ./...
	test/generated.sh sum $(CLANG) > internal/bpfobj/generated.sum

# Fails when the generated files are stale: the sources or the generated
# files differ from the record make generate keeps (test/generated.sh).
check-generated:
	test/generated.sh check $(CLANG)

# BPF C in the kernel's style (bpf/.clang-format).
check-format:
	$(CLANG_FORMAT) --dry-run --Werror bpf/*.c bpf/*.h

# Regenerate vmlinux.h from the running kernel's BTF (needs bpftool).
vmlinux:
	{ printf '/*\n * Generated; do not edit. Kernel types for CO-RE, produced with\n *   bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h\n * on Linux %s (%s); `make vmlinux` redoes it on the running kernel.\n * CO-RE relocations make the programs work on other kernels with BTF.\n */\n' "$$(uname -r | cut -d. -f1-2)" "$$(uname -m)"; \
	  bpftool btf dump file /sys/kernel/btf/vmlinux format c; } > vmlinux.h.tmp && mv vmlinux.h.tmp vmlinux.h

# Regenerate the pages made from the code: the command reference and man
# pages (from the commands' help), the tables of docs/records.md (from the
# records' schema) and of docs/metrics.md. The tests fail when they are stale.
docs:
	$(GO) test -count=1 ./cmd/fdtrace -run '^TestCommittedReferenceDocsMatchTheCommands$$' -update
	$(GO) test -count=1 ./internal/schemadoc -run '^TestCommittedRecordsDocsMatchTheSchema$$' -update
	$(GO) test -count=1 ./internal/metrics -run '^TestCommittedMetricsDocsListTheMetrics$$' -update

# The whole suite, as CI runs it: this kernel, then the kernel matrix.
# Kernel tests need root; with CI=true they fail rather than skip without it.
test: test-host test-kernels

test-host: check-generated check-format
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	@# The fallbacks of older kernels, forced on this one (see docs/design.md,
	@# Older kernels), side by side: compat, and as 5.17 to 6.0 (no
	@# bpf_rdonly_cast, maps preallocated).
	test/parallel.sh \
		"FDTRACE_FORCE_FALLBACK=compat $(GO) test -count=1 ./internal/loader ./internal/tracer" \
		"FDTRACE_FORCE_FALLBACK=compat $(GO) test -count=1 -run 'TestTrace|TestErrorsOnly|TestLeaks|TestTop' ./cmd/fdtrace" \
		"FDTRACE_FORCE_FALLBACK=no-rdonly-cast,prealloc $(GO) test -count=1 ./internal/loader ./internal/tracer"
	$(MAKE) test-fuzz

# The parsers of what traced processes write (perf maps, /proc texts, CFI)
# and the sanitiser, fuzzed for FUZZTIME each beyond their seed corpus
# (which go test runs every time). A crash's input lands in testdata/fuzz:
# commit it with the fix.
FUZZTIME ?= 10s
FUZZ_TARGETS = internal/symbolize:FuzzPerfMap internal/symbolize:FuzzMaps internal/unwind:FuzzSectionRows \
	internal/procfs:FuzzSocketTable internal/procfs:FuzzProcTexts internal/sanitize:FuzzTextIsPrintableUTF8
test-fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done

# The kernel tests on stock Debian kernels booted under qemu (test/kernels/):
# 5.10 (Debian 11), 6.1 (Debian 12), 6.12 (Debian 13); KERNELS="7.x" adds
# trixie-backports' 7.x. Needs qemu-system-x86, busybox-static, cpio, zstd.
KERNELS ?= 5.10 6.1 6.12
KERNEL_CACHE ?= .cache/kernels
test-kernels:
	test/kernels/fetch.sh $(KERNEL_CACHE) $(KERNELS)
	test/kernels/payload.sh .cache/payload
	test/kernels/matrix.sh $(KERNEL_CACHE) .cache/payload $(KERNELS)

# Measures what tracing costs, next to bpftrace and strace, and writes
# docs/PERFORMANCE.md (root; about half an hour). BENCHFLAGS=-quick: a smoke run;
# BENCHFLAGS=-before REV also streams with the fdtrace of REV, side by side.
bench:
	$(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -f fdtrace
