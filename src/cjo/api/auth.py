"""Who is calling: API keys and JWT bearer tokens, roles, business-line scope, rate limits.

Every request under `/v1/` except the provider callbacks (`/v1/channels/...`, which are
signature-checked instead) must carry `X-API-Key: <key>` or `Authorization: Bearer <JWT>`.
`GuardMiddleware` checks them before anything else is done with the request (so an
unauthenticated caller learns nothing from validation errors), rate-limits the principal,
and leaves the `Principal` in the request's state; routes take it with `PrincipalDep` or
`require(role)`, as `Viewer`, `Operator`, `Approver` or `Admin`.

Roles: viewer < operator < approver; admin has every role. A principal sees the business
lines it is scoped to ("*" is every line); anything of another line answers 404 exactly as
a missing thing would (`visible`), so its existence does not leak.

Errors::

    401 unauthenticated     no credentials, or a key or token that is not (or no longer) valid
    403 forbidden           authenticated, but the role is lacking
    429 rate-limited        over `rate_limit_per_minute`; `Retry-After` says when to retry
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Any, cast

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from cjo.api._limits import RateLimiter
from cjo.api.deps import ApiState
from cjo.api.problems import ApiProblem, not_found, problem_response
from cjo.control.principals import ALL_BUSINESS_LINES, ROLES, ApiKeys, Role
from cjo.runtime.log import get_logger
from cjo.runtime.settings import Settings

__all__ = [
    "ALL_BUSINESS_LINES",
    "Admin",
    "Approver",
    "GuardMiddleware",
    "Operator",
    "Principal",
    "PrincipalDep",
    "ROLES",
    "Role",
    "Viewer",
    "authenticate",
    "guarded",
    "require",
    "visible",
]

log = get_logger(__name__)
API_KEY_HEADER = "X-API-Key"
# What the guard leaves in the request's state (`request.state.principal`).
STATE_KEY = "principal"
# Roles that include the ones before them; admin is apart, and has every role.
_RANKED: tuple[Role, ...] = ("viewer", "operator", "approver")
_UNGUARDED_PREFIXES = ("/v1/channels/",)


class Principal(BaseModel):
    """Who is calling: a key (`id` is the key's id) or a JWT's subject (`id` is `sub`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    role: Role
    business_lines: frozenset[str]

    def has(self, role: Role) -> bool:
        if self.role == "admin":
            return True
        if role == "admin":
            return False
        return _RANKED.index(self.role) >= _RANKED.index(role)

    def sees(self, business_line: str) -> bool:
        return ALL_BUSINESS_LINES in self.business_lines or business_line in self.business_lines

    @property
    def sees_all(self) -> bool:
        return ALL_BUSINESS_LINES in self.business_lines


class _Claims(BaseModel):
    """The claims CJO reads from a JWT (others are ignored)."""

    # As long as the audit log keeps an actor: a longer one is refused, not cut.
    sub: str = Field(min_length=1, max_length=128)
    role: Role
    business_lines: list[str]
    name: str | None = None


def guarded(path: str) -> bool:
    """Whether a request to `path` must be authenticated."""
    return path.startswith("/v1/") and not path.startswith(_UNGUARDED_PREFIXES)


def unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthenticated", detail, title="Unauthorized")


def forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, "forbidden", detail)


async def resolve_principal(state: ApiState, headers: Headers) -> Principal:
    """The principal the request's credentials name; a 401 problem when there is none."""
    key = headers.get(API_KEY_HEADER)
    authorization = headers.get("authorization")
    if key:
        if state.sessions is None:
            raise ApiProblem(503, "unavailable", "the database is not connected")
        info = await ApiKeys(state.sessions).authenticate(key.strip())
        if info is None:
            raise unauthenticated("the API key is not valid (unknown, mistyped or revoked)")
        return Principal(
            id=info.id,
            name=info.name,
            role=info.role,
            business_lines=frozenset(info.business_lines),
        )
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("use `Authorization: Bearer <JWT>` or `X-API-Key: <key>`")
        return _from_jwt(state.settings, token.strip())
    raise unauthenticated("send `X-API-Key: <key>` or `Authorization: Bearer <JWT>`")


def _from_jwt(settings: Settings, token: str) -> Principal:
    algorithm = settings.jwt_algorithm
    if algorithm == "HS256":
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        key: Any = secret or None
    else:
        key = _public_key(settings.jwt_public_key) if settings.jwt_public_key else None
    if key is None:
        raise unauthenticated("bearer tokens are not accepted here; use an API key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require": ["sub", "exp"],
                "verify_aud": settings.jwt_audience is not None,
                "verify_iss": settings.jwt_issuer is not None,
            },
        )
        parsed = _Claims.model_validate(claims)
    except jwt.ExpiredSignatureError:
        raise unauthenticated("the bearer token has expired") from None
    except (jwt.InvalidTokenError, ValidationError) as error:
        log.info("bearer token refused", reason=type(error).__name__)
        raise unauthenticated("the bearer token is not valid") from None
    return Principal(
        id=parsed.sub,
        name=parsed.name or parsed.sub,
        role=parsed.role,
        business_lines=frozenset(parsed.business_lines),
    )


@lru_cache(maxsize=4)
def _public_key(pem: str) -> Any:
    # Parsed once per key, not per request.
    return jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(pem)


# Declared for the OpenAPI document (its "Authorize" button); the guard does the checking.
_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKey")
_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="BearerJWT", bearerFormat="JWT")


async def authenticate(
    request: Request,
    _key: Annotated[str | None, Security(_api_key_scheme)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> Principal:
    """The caller, as the guard found it; else (a route outside the guard) found now."""
    found = getattr(request.state, STATE_KEY, None)
    if isinstance(found, Principal):
        return found
    principal = await resolve_principal(cast(ApiState, request.app.state.cjo), request.headers)
    setattr(request.state, STATE_KEY, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require(role: Role) -> Any:
    """A dependency: the principal, if it has `role`; else 403 (401 when unauthenticated)."""

    async def _having_role(principal: PrincipalDep) -> Principal:
        if not principal.has(role):
            raise forbidden(f"this needs the {role} role; the caller is {principal.role}")
        return principal

    _having_role.__name__ = f"require_{role}"
    return Depends(_having_role)


# The principal of a route that needs the role; every route takes one of these.
Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Approver = Annotated[Principal, require("approver")]
Admin = Annotated[Principal, require("admin")]


def visible(
    principal: Principal, business_line: str | None, what: str = "resource", id: str | None = None
) -> None:
    """404, worded as for a missing thing, when `business_line` is not the principal's.

    `None` is a thing of no business line, which every principal sees. Pass `what` and `id`
    as the route's own "not found" names them (e.g. "campaign", the campaign's id), so both
    answers are the same.
    """
    if business_line is None or principal.sees(business_line):
        return
    raise not_found(f"no {what} {id}" if id is not None else f"no such {what}")


class GuardMiddleware:
    """Authenticate and rate-limit every guarded request before the app sees it."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = cast(ApiState, scope["app"].state.cjo)
        try:
            principal = await resolve_principal(state, Headers(scope=scope))
        except ApiProblem as problem:
            if problem.problem.status == 401:
                log.info("unauthenticated call", path=scope["path"], detail=problem.problem.detail)
            response = problem_response(problem.problem, scope["path"])
            if problem.problem.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer, ApiKey header="X-API-Key"'
            await response(scope, receive, send)
            return
        wait = self.limiter.take(principal.id)
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            refused = ApiProblem(
                429,
                "rate-limited",
                f"over {self.limiter.per_minute} requests a minute for this principal; "
                f"retry in {retry_after} s",
                title="Too Many Requests",
            )
            log.info("rate limited", principal=principal.id, retry_after=retry_after)
            response = problem_response(refused.problem, scope["path"])
            response.headers["Retry-After"] = str(retry_after)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = principal
        await self.app(scope, receive, send)
