"""Reproducers of real conditions, as processes bounded in time that clean up after
themselves.  Each starts *before* the investigation, as in a real incident."""
