# The two commands of the README (run as root):
#   make run    install what is needed and investigate this machine with playbooks/freeze.yaml
#   make test   install what the tests need and run the whole suite
# make test-slow runs the suite on a machine made slower (scripts/slow-machine.sh).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: run test test-slow bench setup setup-test probes check-probes clean

run: setup
	$(VENV)/bin/investigate playbooks/freeze.yaml $(ARGS); rc=$$?; [ $$rc -le 1 ] || exit $$rc

test: setup-test
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-slow: setup-test
	sh scripts/slow-machine.sh $(PYTEST_ARGS)

# Side-by-side benchmarks against bpftrace and libbpf-tools, calm and sick (docs/performance.md).
bench:
	sh scripts/setup.sh bench
	$(VENV)/bin/python bench/run.py --reps 5 --sick-reps 3 --out docs/performance.md

setup:
	sh scripts/setup.sh runtime

setup-test:
	sh scripts/setup.sh test

# Rebuild the committed CO-RE objects from their sources (needs clang, llvm-strip).
probes:
	sh probes/build.sh

# Check that the committed objects are what their sources compile to.
check-probes:
	$(VENV)/bin/python -m pytest tests/test_probe_objects.py -q

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
