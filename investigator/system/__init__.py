"""What the OS tells us outside BPF: /proc, kallsyms, mounts, capabilities, doctor checks."""
