#!/usr/bin/env bash
# Runs PAYLOAD_DIR (see boot.sh) on each named kernel of CACHE_DIR (see
# fetch.sh), all at once, and prints a summary. Exit 1 if any failed.
#
# Usage: matrix.sh CACHE_DIR PAYLOAD_DIR [NAMES...]   (default: 5.10 6.1 6.12)
# Env:   KERNEL_TIMEOUT (seconds per kernel, default 1200: a kernel takes
#        about 900 when three share two cores)
#        JOBS (VMs at a time, default: all; each TCG VM keeps a core busy,
#        so with more VMs than cores they share them, and none waits for
#        another to end)
#        LOG_DIR (console logs; default: a new directory under $TMPDIR)
set -euo pipefail

cache=${1:?usage: matrix.sh CACHE_DIR PAYLOAD_DIR [NAMES...]}
payload=${2:?usage: matrix.sh CACHE_DIR PAYLOAD_DIR [NAMES...]}
shift 2
names=("$@")
((${#names[@]})) || names=(5.10 6.1 6.12)
timeout_s=${KERNEL_TIMEOUT:-1200}
parallel=${JOBS:-${#names[@]}}
logs=${LOG_DIR:-$(mktemp -d --tmpdir kernel-matrix.XXXXXX)}
here=$(dirname "$(realpath "$0")")
mkdir -p "$logs"

# One kernel: boot.sh's output goes to the terminal and to NAME.out, whose
# last line is boot.sh's verdict; NAME.result gets "exit-code seconds".
run() {
	local name=$1 start=$SECONDS rc=0
	if [[ -f $cache/$name/vmlinux ]]; then
		NAME=$name LOG=$logs/$name.log "$here/boot.sh" "$cache/$name/vmlinux" "$payload" "$timeout_s" 2>&1 |
			tee "$logs/$name.out" || rc=$?
	else
		echo "matrix.sh: $name: FAIL: no $cache/$name/vmlinux (run fetch.sh)" | tee "$logs/$name.out"
		rc=1
	fi
	echo "$rc $((SECONDS - start))" >"$logs/$name.result"
}

start=$SECONDS running=0
for name in "${names[@]}"; do
	if ((running >= parallel)); then
		wait -n || true
		running=$((running - 1))
	fi
	run "$name" &
	running=$((running + 1))
done
wait

failed=0
printf '\n%-6s %-24s %-6s %-7s %s\n' kernel version result seconds reason
for name in "${names[@]}"; do
	read -r rc secs <"$logs/$name.result"
	result=ok reason=
	if ((rc != 0)); then
		failed=1 result=FAIL
		reason=$(tail -1 "$logs/$name.out")
		reason=${reason#*FAIL: }
	fi
	printf '%-6s %-24s %-6s %-7s %s\n' "$name" "$(cat "$cache/$name/version" 2>/dev/null || echo '?')" \
		"$result" "$secs" "$reason"
done
echo "total ${#names[@]} kernels in $((SECONDS - start))s, logs in $logs"
exit "$failed"
