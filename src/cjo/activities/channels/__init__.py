"""Channels: delivering the outbox to providers, and what providers report back."""
