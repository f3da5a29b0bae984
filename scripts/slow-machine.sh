#!/bin/sh
# Run the test suite on a machine made slower than this one, to show which tests assume
# how fast it is (`make test-slow`):
#   - one CPU (CPU 0: the tests put their scenarios on the last CPU) is kept busy by a busy
#     loop at normal priority, which ends by itself
#     after SLOW_MAX_S seconds (default 7200) and is killed when the suite ends;
#   - the second-kernel guests run all their vCPUs on one host thread (TCG thread=single),
#     about half the speed of one host thread per vCPU.
# Arguments are passed to pytest (e.g. `sh scripts/slow-machine.sh -m 'bpf and not second_kernel'`).
set -eu
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
cpu=0
max=${SLOW_MAX_S:-7200}
taskset -c "$cpu" "$VENV/bin/python" -c "
import os, time
os.setsid()
end = time.monotonic() + $max
while time.monotonic() < end:
    pass
" &
load=$!
trap 'kill $load 2>/dev/null; wait $load 2>/dev/null || true' EXIT INT TERM
echo "slow-machine: CPU $cpu kept busy by pid $load (at most ${max} s); guests on one TCG thread"
rc=0
INVESTIGATOR_VM_ACCEL="tcg,thread=single" "$VENV/bin/python" -m pytest "$@" || rc=$?
exit $rc
