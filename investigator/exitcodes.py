"""Exit codes of ``investigate`` (documented in docs/usage.md)."""

OK = 0               # ran; no problem found
PROBLEM = 1          # ran; at least one problem verdict
USAGE = 2            # bad command line or invalid playbook
ENVIRONMENT = 3      # this machine cannot run it (not root, no libbpf, nothing could attach)
INTERRUPTED = 130    # SIGINT/SIGTERM: partial report written
