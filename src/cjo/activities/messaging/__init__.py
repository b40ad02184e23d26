"""Messaging: the send decision (consent, caps, quiet hours, rendering) and the outbox."""
