#!/usr/bin/env bash
# Downloads the newest stock Debian kernel of each class of the matrix and
# leaves CACHE_DIR/<name>/vmlinux (uncompressed ELF, bootable by qemu -kernel)
# and CACHE_DIR/<name>/version (its uname -r). Kernels already there are kept.
#
# Usage: fetch.sh CACHE_DIR [NAMES...]   (default: all of 5.10 6.1 6.12 7.x)
# Env:   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (default: what /etc/apt uses)
set -Eeuo pipefail # -E: the ERR trap below also in functions

cache=${1:?usage: fetch.sh CACHE_DIR [NAMES...]}
shift
wanted=" ${*:-5.10 6.1 6.12 7.x} "

# name, suites, package holding the image (%s: the ABI, e.g. 6.1.0-44-amd64).
# 7.x has no -unsigned package: the image is in linux-binary-ABI.
classes=(
	"5.10 bullseye,bullseye-security linux-image-%s-unsigned"
	"6.1 bookworm,bookworm-security linux-image-%s-unsigned"
	"6.12 trixie,trixie-security linux-image-%s-unsigned"
	"7.x trixie-backports linux-binary-%s"
)

trap 'echo "fetch.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
die() {
	echo "fetch.sh: $*" >&2
	exit 1
}

# The first URI of the host's apt sources (one-line or deb822) ending in /$1.
host_uri() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed 's/#.*//' | grep -oE "https?://[^] ]*/$1/?( |\$)" | head -1 | tr -d ' ' || true
}
mirror=${DEBIAN_MIRROR:-$(host_uri debian)}
security=${DEBIAN_SECURITY_MIRROR:-$(host_uri debian-security)}
[[ -n $mirror ]] || die "no Debian mirror in /etc/apt; set DEBIAN_MIRROR"
[[ -n $security ]] || security=${mirror%/debian*}/debian-security

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A private apt: own sources, lists, cache and dpkg status; the host's apt
# configuration and state are neither read nor written.
private_apt() { # DIR SUITES
	local dir=$1 suite uri
	mkdir -p "$dir"/{lists/partial,cache/archives/partial,parts,deb}
	: >"$dir/status"
	for suite in ${2//,/ }; do
		uri=$mirror
		[[ $suite == *-security ]] && uri=$security
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main"
	done >"$dir/sources.list"
	cat >"$dir/apt.conf" <<-EOF
		Dir::Etc::Main "/dev/null";
		Dir::Etc::Parts "$dir/parts";
		Dir::Etc::SourceList "$dir/sources.list";
		Dir::Etc::SourceParts "$dir/parts";
		Dir::Etc::Preferences "/dev/null";
		Dir::Etc::PreferencesParts "$dir/parts";
		Dir::State "$dir";
		Dir::State::Lists "$dir/lists";
		Dir::State::status "$dir/status";
		Dir::Cache "$dir/cache";
		APT::Architecture "amd64";
		APT::Architectures { "amd64"; };
		Acquire::Languages "none";
		APT::Sandbox::User "root";
	EOF
}

# scripts/extract-vmlinux: find an xz or zstd stream's magic, decompress from
# there (trailing bytes make the decompressor fail: ignored), keep an ELF.
extract_vmlinux() { # VMLINUZ OUT
	local magic tool off
	while read -r magic tool; do
		while read -r off; do
			tail -c "+$((off + 1))" "$1" | "$tool" -dc >"$2" 2>/dev/null || true
			readelf -h "$2" >/dev/null 2>&1 && return 0
		done < <(LC_ALL=C grep -obUaP "$magic" "$1" | cut -d: -f1 || true) # offsets only: bash's read fails on non-UTF-8
	done <<-'EOF'
		\xFD7zXZ\x00 xz
		\x28\xB5\x2F\xFD zstd
	EOF
	return 1
}

fetch() { # NAME SUITES PACKAGE-FORMAT
	local name=$1 dir=$cache/$1 apt=$tmp/$1 abi pkg image version
	if [[ -s $dir/vmlinux && -s $dir/version ]]; then
		echo "$name: cached, $(<"$dir/version")"
		return
	fi
	private_apt "$apt" "$2"
	export APT_CONFIG=$apt/apt.conf
	apt-get -qq --error-on=any update # a suite that failed to download is an error, not a warning
	abi=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: linux-image-\([0-9].*\)$/\1/p' | head -1 || true)
	[[ -n $abi ]] || die "$name: no linux-image-amd64 in $2"
	# shellcheck disable=SC2059 # the format comes from the table above
	pkg=$(printf "$3" "$abi")
	apt-cache show "$pkg" >/dev/null 2>&1 || die "$name: package $pkg missing from $2"
	(cd "$apt/deb" && apt-get -qq download "$pkg")
	# Only the image: boot/vmlinuz-V, or usr/lib/modules/V/vmlinuz for 7.x.
	mkdir "$apt/root"
	dpkg-deb --fsys-tarfile "$apt"/deb/*.deb |
		tar -x -C "$apt/root" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*/vmlinuz' 2>/dev/null || true
	image=$(find "$apt/root" -name 'vmlinuz*' -type f | head -1)
	[[ -n $image ]] || die "$name: no vmlinuz in $pkg"
	version=${image#"$apt"/root/boot/vmlinuz-}
	[[ $version != "$image" ]] || version=$(basename "$(dirname "$image")")
	mkdir -p "$dir"
	extract_vmlinux "$image" "$dir/vmlinux.tmp" || die "$name: no xz/zstd ELF found in $pkg's vmlinuz"
	mv "$dir/vmlinux.tmp" "$dir/vmlinux"
	echo "$version" >"$dir/version"
	echo "$name: $pkg, $version"
}

for class in "${classes[@]}"; do
	[[ $wanted == *" ${class%% *} "* ]] || continue
	# shellcheck disable=SC2086 # one row: NAME SUITES PACKAGE-FORMAT
	fetch $class
done
for name in $wanted; do
	[[ -s $cache/$name/vmlinux ]] || die "$name: no such kernel class (5.10 6.1 6.12 7.x)"
done
