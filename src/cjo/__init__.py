"""CJO: customer-journey operations for a bank, run as durable Temporal workflows."""

__version__ = "0.1.0"
