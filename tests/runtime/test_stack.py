"""The embedded stack starts idempotently on configurable ports and stops cleanly."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from cjo.runtime import stack
from cjo.runtime.settings import Settings
from cjo.runtime.temporal import connect


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stack_starts_once_reuses_and_stops(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "cjo",
        temporal_port=_free_port(),
        temporal_ui_port=_free_port(),
        database_url=None,
        temporal_address=None,
    )
    first = stack.start(settings)
    try:
        assert first.embedded_database and first.embedded_temporal
        assert first.temporal_address == f"127.0.0.1:{settings.temporal_port}"
        assert _open(settings.temporal_port)
        assert (settings.home / "temporal.db").exists()
        again = stack.start(settings)
        assert again == first  # the same servers, reused
        client = asyncio.run(connect(settings))
        assert client.namespace == settings.temporal_namespace
        health = asyncio.run(client.service_client.check_health())
        assert health
    finally:
        stopped = stack.stop(settings)
    assert sorted(stopped) == ["postgres", "temporal"]
    assert not _open(settings.temporal_port)
    assert not (settings.pg_data / "postmaster.pid").exists()
    assert stack.stop(settings) == []


def test_configured_servers_are_used_instead_of_embedded(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "cjo",
        database_url="postgresql://app:secret@db.internal:5432/cjo",
        temporal_address="temporal.internal:7233",
    )
    info = stack.start(settings)
    assert info.database_url == "postgresql+psycopg://app:secret@db.internal:5432/cjo"
    assert info.temporal_address == "temporal.internal:7233"
    assert not info.embedded_database and not info.embedded_temporal
    assert not settings.home.exists()  # nothing was started, nothing written
