#!/usr/bin/env bash
# Builds the kernel matrix's payload in OUT_DIR (see boot.sh): fdtrace, the
# kernel tests compiled as static binaries, the C workloads they drive
# (static, and dynamic with the distribution's libc copied in), stress-ng
# with its libraries, and test/kernels/guest.sh as /payload/run.
#
# Usage: payload.sh OUT_DIR   (from the repository's top directory)
set -euo pipefail

out=${1:?usage: payload.sh OUT_DIR}
rm -rf "$out"
mkdir -p "$out"/payload/{bin,workloads,repo/testdata}
export CGO_ENABLED=0

go build -o "$out/payload/bin/fdtrace" ./cmd/fdtrace
go test -c -o "$out/payload/bin/loader.test" ./internal/loader
go test -c -o "$out/payload/bin/tracer.test" ./internal/tracer
go test -c -o "$out/payload/bin/cmd.test" ./cmd/fdtrace
cp go.mod "$out/payload/repo/"
cp -r testdata/workloads "$out/payload/repo/testdata/"
cp test/kernels/guest.sh "$out/payload/run"

# NAME FLAGS...: as testutil.BuildC builds it, under testutil.PrebuiltName.
workload() {
	local name=$1 file
	shift
	file=$(echo "$name $*" | tr -c 'A-Za-z0-9\n' '_')
	gcc -O1 -g -Wall -o "$out/payload/workloads/$file" "testdata/workloads/$name.c" "$@"
}
workload fdops -static -pthread
workload acceptor -static
workload leaky -fno-omit-frame-pointer -pthread
workload leaky -O2 -fomit-frame-pointer -pthread
workload leaky -O2 -fomit-frame-pointer -pthread -static
workload uring_open -static
workload uring_accept -static

# stress-ng, whose fd stressors the tracer's tests run, at its own path.
stress_ng=$(command -v stress-ng)
cp --parents "$stress_ng" "$out"

# The dynamic workloads' libraries, at the paths their ld.so looks in, and
# their detached debug symbols where this host has them (libc6-dbg): the
# symbolizer names libc's thread start code from them, as on the host.
for bin in "$out"/payload/workloads/* "$out$stress_ng"; do
	ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' || true
done | sort -u | while read -r lib; do
	cp -L --parents "$lib" "$out"
	id=$(readelf -n "$lib" | sed -n 's/^ *Build ID: *//p')
	debug=/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
	if [[ -n $id && -f $debug ]]; then cp --parents "$debug" "$out"; fi
done
