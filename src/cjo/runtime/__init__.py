"""Settings, logging, the embedded stack and the Temporal client: what every process needs."""
