"""The HTTP API (`/v1`): routes per area under `routes/`, problems, and the app factory."""

from cjo.api.app import create_app

__all__ = ["create_app"]
