#!/usr/bin/env bash
# The generated files' record: what `make generate` made them from, and
# them, as sha256 sums in internal/bpfobj/generated.sum.
#
#   test/generated.sh sum CLANG     print the record of the tree as it is
#   test/generated.sh check CLANG   fail when the generated files are stale
#
# "source" lines are the project's inputs (bpf/, vmlinux.h, gen.go) and
# "output" lines the generated files: a difference in either is staleness (a
# source changed without `make generate`, or a generated file by hand).
# "toolchain" lines (the compiler's version, libbpf's headers) say what the
# files were made with. check also regenerates: the same sources must still
# compile, and with the same toolchain they give the same bytes. Where they
# do not (the same clang has been seen to give other bytes on another
# machine), it says so and keeps the committed files, which are the ones
# the tests load and the record vouches for.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: $0 sum|check CLANG}
clang=${2:?usage: $0 sum|check CLANG}
record=internal/bpfobj/generated.sum
generated=(internal/bpfobj internal/events/enums_gen.go)

sha() { sha256sum <"$1" | cut -d' ' -f1; }

includes() {
	"$clang" -target bpf -D__TARGET_ARCH_x86 "$@" -M bpf/fdtrace.bpf.c |
		tr -s ' \\' '\n\n' | grep -v -e ':$' -e '^$'
}

sum() {
	local files f
	files=$({
		includes
		includes -DFDTRACE_COMPAT
	} | sort -u)
	echo "toolchain $("$clang" --version | head -1)"
	for f in $files; do
		# System headers by their include name, not where this host keeps them.
		case $f in /*) echo "toolchain $(sha "$f") <${f##*/include/}>" ;; esac
	done
	for f in $files; do
		case $f in /*) ;; *) echo "source $(sha "$f") $(realpath --relative-to=. "$f")" ;; esac
	done
	echo "source $(sha gen.go) gen.go"
	for f in internal/bpfobj/*_bpfel.go internal/bpfobj/*_bpfel.o internal/events/enums_gen.go; do
		echo "output $(sha "$f") $f"
	done
}

stale() {
	echo "generated files are stale: run make generate and commit" >&2
	exit 1
}

case $mode in
sum) sum ;;
check)
	[ -f "$record" ] || stale
	now=$(sum)
	if ! diff -u <(grep -v '^toolchain' "$record") <(grep -v '^toolchain' <<<"$now") >&2; then
		stale
	fi
	same_toolchain=true
	if ! diff -u <(grep '^toolchain' "$record") <(grep '^toolchain' <<<"$now") >/dev/null; then
		same_toolchain=false
		echo "note: another toolchain than the one that made the generated files:" >&2
		diff <(grep '^toolchain' "$record") <(grep '^toolchain' <<<"$now") >&2 || true
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cp -a --parents "${generated[@]}" "$tmp"
	make -s generate CLANG="$clang" >/dev/null
	if diff -rq "$tmp/internal/bpfobj" internal/bpfobj >/dev/null &&
		cmp -s "$tmp/internal/events/enums_gen.go" internal/events/enums_gen.go; then
		exit 0
	fi
	gone=false
	for f in $(find internal/bpfobj "$tmp/internal/bpfobj" -type f ! -name generated.sum -printf '%P\n' | sort -u); do
		a=$tmp/internal/bpfobj/$f b=internal/bpfobj/$f
		if [ ! -f "$a" ] || [ ! -f "$b" ]; then
			gone=true # a generated file appeared or went away
		elif ! cmp -s "$a" "$b"; then
			echo "note: $b: $(cmp -l "$a" "$b" | wc -l) bytes differ from the one made from the same sources" >&2
		fi
	done
	rm -rf internal/bpfobj
	cp -a "$tmp/internal/bpfobj" internal/
	cp -a "$tmp/internal/events/enums_gen.go" internal/events/
	! $gone || stale
	$same_toolchain && echo "note: the same sources and toolchain gave other bytes here; the generated files the record vouches for stay" >&2
	;;
*)
	echo "usage: $0 sum|check CLANG" >&2
	exit 2
	;;
esac
