"""Deterministic Temporal workflows: the journey interpreter and the campaign workflow."""
