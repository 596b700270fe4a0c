#!/usr/bin/env bash
# Boots VMLINUX under qemu (TCG: this host's KVM can't run stock kernels) with
# a busybox initramfs that holds PAYLOAD_DIR at its root, runs /payload/run
# and powers off. Exit 0 only when the payload exited 0 and the kernel did
# not oops; otherwise a one-line reason on stderr.
#
# Usage: boot.sh VMLINUX PAYLOAD_DIR TIMEOUT_SECONDS
# Env:   NAME (log prefix; default: VMLINUX's directory name, e.g. 6.12)
#        LOG  (console log file; default: a new file under $TMPDIR)
#        APPEND (more kernel command line, e.g. loglevel=7 for everything)
set -euo pipefail

vmlinux=${1:?usage: boot.sh VMLINUX PAYLOAD_DIR TIMEOUT_SECONDS}
payload=${2:?usage: boot.sh VMLINUX PAYLOAD_DIR TIMEOUT_SECONDS}
timeout_s=${3:?usage: boot.sh VMLINUX PAYLOAD_DIR TIMEOUT_SECONDS}
name=${NAME:-$(basename "$(dirname "$(realpath "$vmlinux")")")}
log=${LOG:-$(mktemp --tmpdir "kernel-$name.XXXXXX.log")}
marker=KERNEL-PAYLOAD-EXIT
# Kernel lines (printk.time=1 stamps them) that mean the run is not to be trusted.
kernel_trouble='\[ *[0-9]+\.[0-9]+\] .*(Kernel panic|Oops|BUG:|general protection|int3)'

fail() {
	echo "boot.sh: $name: FAIL: $*" >&2
	exit 1
}
[[ -f $vmlinux ]] || fail "no kernel at $vmlinux"
[[ -x $payload/payload/run ]] || fail "no executable $payload/payload/run"
busybox=$(command -v busybox) || fail "busybox not found (apt-get install busybox-static)"
if readelf -l "$busybox" | grep -q INTERP; then fail "$busybox is dynamic (apt-get install busybox-static)"; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list-full); do
	[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo "kernel-${name//[^A-Za-z0-9-]/-}" >"$root/etc/hostname"
# The kernel opens /dev/console for /init before anything is mounted.
if ((EUID == 0)); then
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3
fi
cat >"$root/init" <<EOF
#!/bin/sh
# PID 1: mount the basics, run the payload, report its exit code, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1 # in case the initramfs had no /dev/console
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts # pseudo-terminals
# No tracefs on /sys/kernel/tracing: the tool under test mounts it, as on a fresh host.
hostname -F /etc/hostname
ip link set lo up
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=true
cd /root
echo "init: running /payload/run on Linux \$(uname -r)"
/payload/run
printf '\n$marker %d\n' \$?
poweroff -f
EOF
chmod 755 "$root/init"
cp -a "$payload"/. "$root"/
(cd "$root" && find . | cpio --quiet -o -H newc -R 0:0 | gzip -1) >"$work/initramfs.gz"

echo "boot.sh: $name: booting $vmlinux, console log in $log" >&2
start=$SECONDS
set +e
# thread=single: multi-threaded TCG made 6.12 oops while BPF programs attached.
# oops=panic: an oops ends the run at once instead of hanging until the timeout.
# loglevel=5: quiet, but keeps warnings (a WARN's splat), not just errors.
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp 2 -m 2G \
	-nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$vmlinux" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 panic=-1 oops=panic printk.time=1 loglevel=5 ${APPEND:-}" </dev/null 2>&1 |
	sed -u 's/\r$//; s/\x1b\(c\|\[[0-9;?]*[a-zA-Z]\)//g' | tee "$log" | sed -u "s/^/[$name] /"
qemu_rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - start))

trouble=$(grep -aEm1 "$kernel_trouble" "$log" || true)
code=$(grep -aE "^$marker [0-9]+$" "$log" | tail -1 | cut -d' ' -f2 || true)
[[ -z $trouble ]] || fail "kernel: $trouble (log: $log)"
[[ $qemu_rc != 124 && $qemu_rc != 137 ]] || fail "timed out after ${timeout_s}s (log: $log)"
[[ -n $code ]] || fail "no $marker line, qemu exit $qemu_rc (log: $log)"
[[ $code == 0 ]] || fail "payload exited $code after ${elapsed}s (log: $log)"
warned=$(grep -aEm1 '\[ *[0-9]+\.[0-9]+\] .*WARNING:' "$log" || true)
[[ -z $warned ]] || echo "boot.sh: $name: note, the kernel warned: $warned" >&2
echo "boot.sh: $name: ok in ${elapsed}s (log: $log)" >&2
