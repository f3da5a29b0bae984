#!/bin/sh
# Compile CO-RE BPF objects reproducibly: the same sources give the same bytes in any
# folder (-fdebug-compilation-dir=.), and llvm-strip -g drops the DWARF but keeps
# .BTF/.BTF.ext, which CO-RE relocation needs.
#
# Usage: probes/build.sh [-o OUTDIR] [SRC.bpf.c ...]
#   default: every probes/*.bpf.c, each object written beside its source.
#   CLANG=, LLVM_STRIP= override the tools.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=""
if [ "${1:-}" = "-o" ]; then OUT=$2; shift 2; fi
CLANG=${CLANG:-clang}
STRIP=${LLVM_STRIP:-llvm-strip}
ARCH=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
if [ $# -eq 0 ]; then set -- "$HERE"/*.bpf.c; fi
for src in "$@"; do
	dir=$(cd "$(dirname "$src")" && pwd)
	base=$(basename "$src" .c)
	obj="${OUT:-$dir}/$base.o"
	# compile from the source's folder with relative names, so no path is embedded
	(cd "$dir" && "$CLANG" -g -O2 -target bpf -D__TARGET_ARCH_"$ARCH" -fdebug-compilation-dir=. \
		-I. -I"$HERE" -idirafter /usr/include/$(uname -m)-linux-gnu \
		-Wall -Werror -Wno-unused-function -c "$base.c" -o "$obj.tmp")
	"$STRIP" -g "$obj.tmp"
	mv "$obj.tmp" "$obj"
	echo "built $obj"
done
