"""`cjo token`: mint, list and revoke API keys in the database (CJO_DATABASE_URL, else the
embedded one). The key is printed once, on standard output alone, so that
`KEY=$(cjo token create ...)` works; what it is goes to standard error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import click

from cjo.control.principals import ROLES, ApiKeyInfo, ApiKeys, CreateApiKeyInput, Role
from cjo.runtime import stack
from cjo.runtime.settings import get_settings
from cjo.store import migrate
from cjo.store.db import make_engine, make_sessions

T = TypeVar("T")


def _with_keys(work: Callable[[ApiKeys], Awaitable[T]]) -> T:
    settings = get_settings()
    try:
        info = stack.start(settings, temporal=False)
    except stack.StackError as error:
        raise click.ClickException(str(error)) from None
    migrate.upgrade(info.database_url)

    async def run() -> T:
        engine = make_engine(info.database_url, pool_size=1)
        try:
            return await work(ApiKeys(make_sessions(engine)))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@click.group("token")
def token_group() -> None:
    """API keys: mint one for a role and business lines, list them, revoke one."""


@token_group.command("create")
@click.option("--name", required=True, help="Who or what will use the key.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--business-line",
    "business_lines",
    multiple=True,
    required=True,
    help="A business line the key may see (repeat for more; '*' for every line).",
)
def token_create_command(name: str, role: str, business_lines: tuple[str, ...]) -> None:
    """Mint an API key and print it once: only its hash is kept."""
    request = CreateApiKeyInput(
        name=name, role=cast(Role, role), business_lines=list(business_lines), created_by="cli"
    )
    created = _with_keys(lambda keys: keys.create(request))
    lines = ",".join(created.info.business_lines)
    click.echo(
        f"minted {created.info.id} ({created.info.role}; {lines}). Send it as X-API-Key; "
        "it is shown only now.",
        err=True,
    )
    click.echo(created.key)


@token_group.command("list")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
def token_list_command(output: str) -> None:
    """Every key: id, name, role, business lines, and when it was revoked."""
    keys: list[ApiKeyInfo] = _with_keys(lambda keys: keys.list())
    if output == "json":
        click.echo(json.dumps([key.model_dump(mode="json") for key in keys], indent=2))
        return
    for key in keys:
        revoked = f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
        lines = ",".join(key.business_lines)
        click.echo(f"{key.id}  {key.role:<8}  {lines:<24}  {key.name}{revoked}")


@token_group.command("revoke")
@click.argument("key_id")
def token_revoke_command(key_id: str) -> None:
    """Revoke the key KEY_ID (its id, not the key): it stops working at once."""
    if not _with_keys(lambda keys: keys.revoke(key_id)):
        raise click.ClickException(f"no live key {key_id}")
    click.echo(f"revoked {key_id}")
