#!/usr/bin/env bash
# Runs each argument as a shell command, all at once, then prints each
# one's output in turn, prefixed by the command. Exits 1 if any failed.
#
# Usage: parallel.sh COMMAND...
set -uo pipefail

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pids=()
for i in $(seq 1 $#); do
	bash -c "${!i}" >"$dir/$i" 2>&1 &
	pids+=($!)
done
failed=0
for i in $(seq 1 $#); do
	rc=0
	wait "${pids[$((i - 1))]}" || rc=$?
	echo "\$ ${!i}"
	cat "$dir/$i"
	if ((rc != 0)); then
		echo "parallel.sh: exit status $rc"
		failed=1
	fi
done
exit "$failed"
