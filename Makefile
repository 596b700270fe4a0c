# fdtrace build. `make generate` needs the pinned clang; `make build` needs only Go.
CLANG ?= clang-19
STRIP ?= llvm-strip-19
GO ?= go

.PHONY: build generate check-generated test clean

build:
	CGO_ENABLED=0 $(GO) build -o fdtrace ./cmd/fdtrace

generate:
	@$(CLANG) --version | head -1 | grep -q 'version 19\.' || { echo "make generate needs clang 19 ($(CLANG)): apt-get install clang-19 llvm-19 libbpf-dev"; exit 1; }
	BPF_CLANG=$(CLANG) BPF_STRIP=$(STRIP) $(GO) generate ./...

# Fails when the committed generated files differ from what the sources give.
check-generated: generate
	@git diff --exit-code --stat -- internal/loader || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- internal/loader)" || { echo "generated files are stale: run make generate and commit"; exit 1; }

test:
	$(GO) test ./...

clean:
	rm -f fdtrace
