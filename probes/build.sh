#!/bin/sh
# Compile every probes/*.bpf.c into a CO-RE object beside it, reproducibly:
# the same sources give the same bytes in any folder (-fdebug-compilation-dir=.), and
# llvm-strip -g drops the DWARF but keeps .BTF/.BTF.ext, which CO-RE relocation needs.
# Usage: probes/build.sh [NAME.bpf.c ...]   (CLANG=, LLVM_STRIP= to override the tools)
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
STRIP=${LLVM_STRIP:-llvm-strip}
ARCH=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
[ $# -gt 0 ] || set -- *.bpf.c
for src in "$@"; do
	obj="${src%.c}.o"
	"$CLANG" -g -O2 -target bpf -D__TARGET_ARCH_"$ARCH" -fdebug-compilation-dir=. \
		-I. -Wall -Werror -Wno-unused-function -c "$src" -o "$obj.tmp"
	"$STRIP" -g "$obj.tmp"
	mv "$obj.tmp" "$obj"
	echo "built $obj"
done
