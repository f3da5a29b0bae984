"""Collectors: one per probe, turning its maps (or iterator output) into evidence."""
