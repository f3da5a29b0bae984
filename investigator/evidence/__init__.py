"""Evidence records and run bundles (record, replay)."""
