"""The Temporal client factory: one place that knows how to connect."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cjo.runtime.settings import Settings


async def connect(settings: Settings, address: str | None = None) -> Client:
    """A client for `address` (default: the configured or embedded server).

    Payloads go through the pydantic converter, so workflow and activity inputs can be
    the same typed models the rest of CJO uses (the Plan among them).
    """
    target = address or settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
    return await Client.connect(
        target, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )
