"""Analyzers: reasoning over evidence that rules then read (wait-for cycles, ...)."""
