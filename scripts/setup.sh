#!/bin/sh
# Install what investigator needs on a Debian/Ubuntu machine, as root, idempotently.
#   scripts/setup.sh runtime   libbpf1 + a virtualenv (.venv) with the package installed
#   scripts/setup.sh test      + clang/llvm (probe rebuild check), libbpf-dev (struct layout
#                              check), bpftool (the kernel's own listings), test Python deps,
#                              qemu + Debian's 6.1 and 6.12 kernels for the second-kernel stage
#   scripts/setup.sh bench     test's packages (no guests) + libbpf-tools and perf, the peers of bench/
# The package is installed from a wheel built from this checkout (not editable), so the
# tests exercise what users get: the compiled probes inside the package.
set -eu
cd "$(dirname "$0")/.."
MODE=${1:-runtime}
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

need=""
pkgs="libbpf1"
case "$MODE" in test|bench) pkgs="$pkgs clang llvm libbpf-dev bpftool gcc libc6-dev linux-libc-dev bpftrace tmux chromium e2fsprogs";; esac
[ "$MODE" = bench ] && pkgs="$pkgs libbpf-tools linux-perf"
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	echo "setup: installing Debian packages:$need"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
	echo "setup: creating $VENV"
	"$PY" -m venv "$VENV"
fi
extra=""
[ "$MODE" = test ] || [ "$MODE" = bench ] && extra="[test]"
"$VENV/bin/pip" install -q --disable-pip-version-check ".$extra" 2>&1 | grep -v -e '^WARNING: Location' -e 'is ignored' || true
# the second-kernel stage: qemu and Debian's 6.1/6.12 kernels (tests/vm/, tests/test_second_kernel.py)
[ "$MODE" = test ] && sh tests/vm/setup.sh >/dev/null
"$VENV/bin/python" -c "import investigator.probes.manifest as m; assert (m.probes_dir() / 'runqlat.bpf.o').exists(), m.probes_dir()"
echo "setup: ready ($VENV/bin/investigate)"
