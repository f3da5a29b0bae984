#!/bin/sh
# Second-kernel stage, one-time setup (as root, Debian 12): qemu, Debian's 6.1 and 6.12
# kernel images and Debian 11's 5.10 (downloaded and unpacked, never installed), a static busybox, and one
# initramfs per kernel holding the virtio/9p, fuse, loop and ext4 modules and tests/vm/init, and a
# fault module per kernel (tests/vm/faults/, built with its Debian headers and gcc).
#   tests/vm/setup.sh [DIR]      DIR defaults to $INVESTIGATOR_VM_DIR or /var/cache/investigator-vm
# Idempotent: what is already there is kept. Prints one line per kernel: VERSION DIR.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
D=${1:-${INVESTIGATOR_VM_DIR:-/var/cache/investigator-vm}}
mkdir -p "$D/debs"
cd "$D"
need=""
for p in qemu-system-x86 busybox-static binutils; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
# busybox-static is only unpacked (its binary goes into the initramfs); qemu and objcopy run here.
if [ -n "$need" ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 binutils >/dev/null
fi
[ -x bb/bin/busybox ] || {
	(cd debs && apt-get download -qq busybox-static 2>/dev/null)
	mkdir -p bb && dpkg-deb -x debs/busybox-static_*.deb bb
}
# Loaded at boot: the 9p share of the host's root, fuse, and loop and ext4 (the tests'
# own filesystems and block devices, ext4 with the crc32c it checksums with); modules on Debian.
MODULES="virtio_pci 9pnet_virtio 9p fuse loop ext4 crc32c_generic"
# Debian 11 (bullseye) from a sources file of the stage's own, with lists and a cache of its
# own: the system's apt sources and lists are not touched.
ARCHIVE=$(grep -hs '^URIs:.*/debian/*$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
ARCHIVE=${ARCHIVE:-http://deb.debian.org/debian}
OLD="$D/apt-bullseye"
mkdir -p "$OLD/sources" "$OLD/lists/partial" "$OLD/cache/archives/partial"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' \
	"$ARCHIVE" bullseye "${ARCHIVE%/}-security" bullseye-security > "$OLD/sources/bullseye.sources"
OLDOPTS="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$OLD/sources -o Dir::State::Lists=$OLD/lists -o Dir::Cache=$OLD/cache"
# apt for a suite: apt_in SUITE apt-get|apt-cache ARGS... (bookworm: the machine's own)
apt_in() {
	suite_=$1 cmd_=$2; shift 2
	if [ "$suite_" = bookworm ]; then "$cmd_" "$@"; else "$cmd_" $OLDOPTS "$@"; fi
}
ls "$OLD/lists" | grep -q _Packages || apt-get $OLDOPTS update -qq >/dev/null 2>&1 ||
	echo "setup: the bullseye lists could not be fetched: no 5.10 guest" >&2
# The versioned package behind each meta-package (security updates rename it), by suite.
for entry in bookworm:linux-image-amd64 bookworm:linux-image-6.12-amd64 bullseye:linux-image-amd64; do
	suite=${entry%%:*} meta=${entry#*:}
	KPKG=$(apt_in "$suite" apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
	[ -n "$KPKG" ] || { echo "setup: no package behind $meta in $suite" >&2; continue; }
	KVER=${KPKG#linux-image-}
	K="k-$KVER"
	# rebuilt when tests/vm/init changes
	SUM=$( (cat "$HERE/init" "$HERE/moddeps.py"; echo "$MODULES") | cksum | cut -d' ' -f1)
	if [ ! -f "$K/initramfs.cpio.gz" ] || [ "$(cat "$K/init.sum" 2>/dev/null)" != "$SUM" ]; then
		(cd debs && { ls "${KPKG}"_*.deb >/dev/null 2>&1 || apt_in "$suite" apt-get download -qq "$KPKG" 2>/dev/null; }) ||
			{ echo "setup: $KPKG could not be downloaded" >&2; continue; }
		rm -rf "$K" && mkdir -p "$K"
		dpkg-deb -x debs/"${KPKG}"_*.deb "$K"
		ln -sf "vmlinuz-$KVER" "$K/boot/vmlinuz"
		R=$(mktemp -d "$D/irfs.XXXX")
		mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/host" "$R/mod"
		cp bb/bin/busybox "$R/bin/busybox"
		cp "$HERE/init" "$R/init"; chmod +x "$R/init"
		: > "$R/modules.order"
		for ko in $(python3 "$HERE/moddeps.py" "$K/lib/modules/$KVER" $MODULES 2>/dev/null); do
			b=mod/$(basename "$ko" .xz)
			case $ko in
			*.xz) python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$ko" > "$R/$b" ;;
			*) cp "$ko" "$R/$b" ;;
			esac
			echo "$b" >> "$R/modules.order"
		done
		(cd "$R" && find . | "$D/bb/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$K/initramfs.cpio.gz.tmp"
		mv "$K/initramfs.cpio.gz.tmp" "$K/initramfs.cpio.gz"
		echo "$SUM" > "$K/init.sum"
		rm -rf "$R"
		# Only the image, its config and the initramfs are needed from here on.
		rm -rf "$K/lib/modules" "$K/usr"
	fi
	# The fault module (tests/vm/faults/) built against this kernel's Debian headers,
	# rebuilt when its source changes; the headers are unpacked for the build only.
	FSUM=$(cat "$HERE/faults/faults.c" "$HERE/faults/Kbuild" | cksum | cut -d' ' -f1)
	if [ ! -f "$K/faults.ko" ] || [ "$(cat "$K/faults.sum" 2>/dev/null)" != "$FSUM" ]; then
		HPKGS="linux-headers-$KVER $(apt_in "$suite" apt-cache depends "linux-headers-$KVER" 2>/dev/null |
			awk '/Depends: linux-(headers|kbuild)-/{print $2}')"
		H=$(mktemp -d "$D/hdr.XXXX")
		for p in $HPKGS; do
			(cd debs && { ls "${p}"_*.deb >/dev/null 2>&1 || apt_in "$suite" apt-get download -qq "$p" 2>/dev/null; }) &&
				dpkg-deb -x debs/"${p}"_*.deb "$H" || echo "setup: $p could not be downloaded" >&2
		done
		# the flavour's Makefile includes the common one by absolute path; no module BTF
		# (6.12 would want pahole, and nothing reads the module's types)
		sed -i "s|include /usr/src/|include $H/usr/src/|" "$H/usr/src/linux-headers-$KVER/Makefile"
		# the kernel's own gcc where this machine has it (Debian 11's gcc-10 it has not: its gcc)
		KCC=$(sed -n 's/^CC = .*[) ]\(gcc-[0-9]*\)$/\1/p' "$H/usr/src/linux-headers-$KVER/.kernelvariables" 2>/dev/null)
		CCOPT=
		[ -z "$KCC" ] || command -v "$KCC" >/dev/null || CCOPT=CC=gcc
		B=$(mktemp -d "$D/faults.XXXX")
		cp "$HERE/faults/faults.c" "$HERE/faults/Kbuild" "$B/"
		if make -s -C "$H/usr/src/linux-headers-$KVER" M="$B" $CCOPT CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$B/build.log" 2>&1; then
			cp "$B/faults.ko" "$K/faults.ko" && echo "$FSUM" > "$K/faults.sum"
		else
			echo "setup: building the fault module for $KVER failed:" >&2; tail -20 "$B/build.log" >&2
		fi
		rm -rf "$H" "$B"
	fi
	echo "$KVER $D/$K"
done
