"""People: profiles, consents, events, lifecycle stages and segments."""
