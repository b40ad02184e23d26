"""Delivery: the dispatcher that takes messages from the outbox to channel providers, and
what comes back (receipts, replies, clicks, inbox reads)."""
