"""Authentication (API keys, HS256 and RS256 JWTs), the rate limit, body and batch caps,
and request ids: against the real app and database, with keys made for each test."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sqlalchemy import text

from cjo.api._limits import RateLimiter
from cjo.api.auth import Principal
from cjo.cli.dev import dev_admin_key
from cjo.cli.main import cli
from cjo.control.principals import ApiKeys
from cjo.runtime.settings import get_settings
from cjo.store.db import SessionFactory, reading
from tests.api.conftest import ApiClients, AppFactory
from tests.api.support import problem

HS_SECRET = "a-test-secret-of-enough-length-for-hs256"
EVENT = {"id": "e1", "user_id": "u1", "name": "app_opened", "ts": "2026-03-01T10:00:00+08:00"}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice@bank",
        "name": "Alice",
        "role": "operator",
        "business_lines": ["retail"],
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    return {key: value for key, value in (base | changes).items() if value is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rsa_pair() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public_pem


async def status_of(
    app: ApiClients, headers: dict[str, str], path: str = "/v1/users/nobody"
) -> int:
    http = await app.client(headers=headers)
    return (await http.get(path)).status_code


def test_roles_are_ordered_and_admin_has_every_role() -> None:
    def principal(role: Any) -> Principal:
        return Principal(id="p", name="p", role=role, business_lines=frozenset({"retail"}))

    assert [principal("viewer").has(r) for r in ("viewer", "operator", "approver", "admin")] == [
        True,
        False,
        False,
        False,
    ]
    assert [principal("approver").has(r) for r in ("viewer", "operator", "approver", "admin")] == [
        True,
        True,
        True,
        False,
    ]
    assert all(principal("admin").has(r) for r in ("viewer", "operator", "approver", "admin"))
    assert principal("viewer").sees("retail") and not principal("viewer").sees("wealth")
    everywhere = Principal(id="p", name="p", role="viewer", business_lines=frozenset({"*"}))
    assert everywhere.sees("wealth") and everywhere.sees_all


async def test_calls_without_valid_credentials_are_401_problems(
    db_app: ApiClients, sessions: SessionFactory
) -> None:
    anonymous = await db_app.client(headers={})
    for path in ("/v1/users/u1", "/v1/audit", "/v1/campaigns/c1", "/v1/no-such-thing"):
        body = problem(await anonymous.get(path), 401)
        assert body["type"] == "urn:cjo:problem:unauthenticated"
    answer = await anonymous.get("/v1/users/u1")
    assert "Bearer" in answer.headers["www-authenticate"]
    # Checked before the body is read: a stranger learns nothing from validation errors.
    garbled = await anonymous.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    problem(garbled, 401)
    key = await db_app.mint("admin")
    key_id = key.split(".")[0]
    for wrong in ("nonsense", f"{key_id}.wrong-secret", key[:-1], f"{key}x", "key_.x"):
        assert await status_of(db_app, {"X-API-Key": wrong}) == 401, wrong
    assert await status_of(db_app, {"Authorization": f"Basic {key}"}) == 401
    assert await status_of(db_app, {"Authorization": "Bearer not-a-jwt"}) == 401
    assert await status_of(db_app, {"X-API-Key": key}) == 404  # authenticated: no such user
    assert await ApiKeys(sessions).revoke(key_id)
    assert await status_of(db_app, {"X-API-Key": key}) == 401  # revoked, at once
    # What needs no principal still answers to anyone.
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_keys_are_kept_only_as_hashes(db_app: ApiClients, sessions: SessionFactory) -> None:
    key = await db_app.mint("operator", ["retail"], name="crm sync")
    async with reading(sessions) as connection:
        row = (await connection.execute(text("SELECT * FROM api_keys"))).mappings().one()
    assert key not in {str(value) for value in row.values()}
    assert key.split(".")[1] not in " ".join(str(value) for value in row.values())
    assert row["secret_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert (row["name"], row["role"], row["business_lines"]) == ("crm sync", "operator", ["retail"])
    assert len(key.split(".")[1]) >= 43  # 32 random bytes, URL-safe base64


async def test_hs256_tokens(make_db_app: AppFactory) -> None:
    app = make_db_app(jwt_algorithm="HS256", jwt_secret=SecretStr(HS_SECRET))

    def token(secret: str = HS_SECRET, **changes: Any) -> dict[str, str]:
        return bearer(jwt.encode(claims(**changes), secret, algorithm="HS256"))

    operator = await app.client(headers=token())
    assert (await operator.put("/v1/users/u1", json={"name": "Li"})).status_code == 200
    problem(await operator.get("/v1/audit"), 403)  # authenticated, role lacking
    assert await status_of(app, token(role="admin"), "/v1/audit") == 200
    expired = token(exp=datetime.now(UTC) - timedelta(seconds=1))
    assert (await (await app.client(headers=expired)).get("/v1/users/u1")).json()["detail"] == (
        "the bearer token has expired"
    )
    for refused in (
        token(secret="another-secret-of-enough-length-for-hs256"),
        token(exp=None),  # a token that never expires is not accepted
        token(role="superuser"),
        token(business_lines=None),
        token(sub=None),
        token(sub="x" * 129),
        bearer(jwt.encode(claims(), key=None, algorithm="none")),
    ):
        assert await status_of(app, refused) == 401, refused


async def test_rs256_tokens(make_db_app: AppFactory) -> None:
    private, public_pem = rsa_pair()
    stranger, _ = rsa_pair()
    app = make_db_app(
        jwt_algorithm="RS256", jwt_public_key=public_pem, jwt_audience="cjo", jwt_issuer="idp"
    )

    def token(key: Any = private, algorithm: str = "RS256", **changes: Any) -> dict[str, str]:
        payload = claims(**({"aud": "cjo", "iss": "idp"} | changes))
        return bearer(jwt.encode(payload, key, algorithm=algorithm))

    assert await status_of(app, token()) == 404  # authenticated: no such user
    viewer = await app.client(headers=token(role="viewer"))
    problem(await viewer.put("/v1/users/u1", json={"name": "Li"}), 403)
    for refused in (
        token(key=stranger),
        token(aud="someone-else"),
        token(aud=None),
        token(iss="elsewhere"),
        # An HMAC-signed token where RS256 is configured: the algorithm is not the token's
        # to choose (else a public key could be used as an HMAC secret).
        bearer(jwt.encode(claims(aud="cjo", iss="idp"), HS_SECRET, algorithm="HS256")),
    ):
        assert await status_of(app, refused) == 401, refused


async def test_bearer_tokens_are_refused_when_none_are_configured(db_app: ApiClients) -> None:
    token = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    answer = await (await db_app.client(headers=bearer(token))).get("/v1/users/u1")
    assert problem(answer, 401)["detail"] == "bearer tokens are not accepted here; use an API key"


def test_the_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    assert limiter.take("a") == 20.0  # one request every 20 s
    assert limiter.take("b") is None  # per principal
    now[0] = 10.0
    assert limiter.take("a") == 10.0
    now[0] = 20.0
    assert limiter.take("a") is None
    now[0] = 1000.0  # a long pause refills no more than the burst
    assert [limiter.take("a") for _ in range(4)][-1] is not None


async def test_a_principal_over_its_rate_gets_429_with_retry_after(
    make_db_app: AppFactory,
) -> None:
    # One request a minute: the second, right after, is over the rate however slow the host.
    app = make_db_app(rate_limit_per_minute=1)
    first, other = await app.client("viewer"), await app.client("viewer")
    assert (await first.get("/v1/users/u1")).status_code == 404
    refused = await first.put("/v1/users/u1", json={"name": "Li"})
    body = problem(refused, 429)
    assert body["type"] == "urn:cjo:problem:rate-limited"
    assert "1 requests a minute" in body["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await other.get("/v1/users/u1")).status_code == 404  # another principal's own rate


async def test_bodies_over_the_cap_are_413(make_db_app: AppFactory) -> None:
    app = make_db_app(max_body_bytes=2048)
    operator = await app.client("operator")
    big = {"events": [EVENT | {"id": f"e{n}", "props": {"note": "x" * 200}} for n in range(20)]}
    body = problem(await operator.post("/v1/events", json=big), 413)
    assert body["detail"].endswith("the limit is 2048")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):  # no Content-Length: the cap is counted as the body arrives
            yield b" " * 512

    streamed = await operator.post(
        "/v1/users/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "over 2048 bytes" in problem(streamed, 413)["detail"]
    assert (await operator.put("/v1/users/u1", json={"name": "Li"})).status_code == 200
    # Refused before routing, each is still audited under its route's action.
    audit = (await (await app.client("admin")).get("/v1/audit")).json()["items"]
    assert [(row["action"], row["status"]) for row in reversed(audit)] == [
        ("events.post_events", 413),
        ("users.post_users", 413),
        ("users.put_user", 200),
    ]


async def test_batches_over_the_cap_are_413(make_full_app: AppFactory) -> None:
    app = make_full_app(max_batch=2)
    operator = await app.client("operator")
    events = [EVENT | {"id": f"e{n}"} for n in range(3)]
    body = problem(await operator.post("/v1/events", json={"events": events}), 413)
    assert body["detail"] == "3 events; the limit is 2 a request"
    users = [{"id": f"u{n}"} for n in range(3)]
    body = problem(await operator.post("/v1/users/batch", json={"users": users}), 413)
    assert body["detail"] == "3 profiles; the limit is 2 a request"
    assert (await operator.post("/v1/events", json={"events": events[:2]})).status_code == 202


async def test_request_ids_are_echoed_or_made(db_api: httpx.AsyncClient) -> None:
    given = await db_api.get("/healthz", headers={"X-Request-ID": "req-42.a:b"})
    assert given.headers["x-request-id"] == "req-42.a:b"
    made = await db_api.get("/v1/users/u1", headers={"X-Request-ID": "no spaces\tor tabs"})
    assert len(made.headers["x-request-id"]) == 32 and "\t" not in made.headers["x-request-id"]
    assert (await db_api.get("/healthz")).headers["x-request-id"]


async def test_cli_mints_a_key_once_that_works_until_revoked(
    db_app: ApiClients, database_url: str
) -> None:
    cjo = str(Path(sys.executable).parent / "cjo")

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            cjo,
            "token",
            *args,
            env={"CJO_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run(
        "create", "--name", "ops", "--role", "operator", "--business-line", "retail"
    )
    assert code == 0, err
    key = out.strip()
    assert "\n" not in key and "shown only now" in err
    operator = await db_app.client(headers={"X-API-Key": key})
    assert (await operator.put("/v1/users/u1", json={"name": "Li"})).status_code == 200
    problem(await operator.get("/v1/audit"), 403)
    code, out, _ = await run("list")
    key_id = key.split(".")[0]
    assert code == 0 and key_id in out and "operator" in out and key not in out
    code, out, _ = await run("revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    problem(await operator.get("/v1/users/u1"), 401)
    refused = CliRunner().invoke(
        cli, ["token", "create", "--name", "x", "--role", "root", "--business-line", "a"]
    )
    assert refused.exit_code == 2 and "root" in refused.output


async def test_dev_keeps_one_admin_key_and_mints_another_once_revoked(
    db_app: ApiClients, sessions: SessionFactory, tmp_path: Path
) -> None:
    settings = get_settings().model_copy(update={"home": tmp_path})
    key = await dev_admin_key(settings, sessions)
    assert (tmp_path / "dev-admin-key").stat().st_mode & 0o077 == 0  # the owner's alone
    assert await dev_admin_key(settings, sessions) == key
    admin = await db_app.client(headers={"X-API-Key": key})
    assert (await admin.get("/v1/audit")).status_code == 200
    assert await ApiKeys(sessions).revoke(key.split(".")[0])
    fresh = await dev_admin_key(settings, sessions)
    assert fresh != key and await ApiKeys(sessions).authenticate(fresh) is not None
