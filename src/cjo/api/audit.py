"""The audit trail of the API: one append-only row per mutating call.

`AuditMiddleware` (the outermost layer) gives every request a request id (the caller's
`X-Request-ID` when it is a sensible one, else a new one) and echoes it in the answer.
For each mutating call (POST, PUT, PATCH, DELETE) under `/v1/` made by an authenticated
principal it writes one `audit_log` row, just before the answer's first byte goes out:
who (key id or JWT subject), their role, the business line, the action (`<area>.<route>`,
e.g. `campaigns.launch`), the target, the request id, the status, and the SHA-256 of the
canonical JSON of the target's state before and after, when the route gave them.

Routes add what only they know through `AuditDep`::

    audit.target("campaign", campaign.id, campaign.business_line)
    audit.before(campaign)
    ...
    audit.after(changed)

Calls that are not audited, and why:

- provider callbacks (`/v1/channels/...`): no principal makes them; every receipt and
  reply is itself stored, keyed and deduplicated (delivery receipts, events), which is
  their record. Auditing them would double the write load of the busiest endpoints.
- calls answered 401 or 429: no principal was established (401), or the call was refused
  before doing anything (429). They are logged. Auditing them would let anyone flood the
  audit table at their own pace.

Every other mutating call writes its row whatever the answer: 2xx, 403, 404, 409, 413,
422 and 500 alike (a refused attempt is as telling as a done one).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.routing import iter_route_contexts
from pydantic_core import to_jsonable_python
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cjo.api.auth import STATE_KEY, Principal, guarded
from cjo.api.deps import ApiState
from cjo.control.audit_trail import AuditRow, AuditTrail
from cjo.runtime.log import get_logger

log = get_logger(__name__)
REQUEST_ID_HEADER = "X-Request-ID"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_STATE_KEY = "audit"
# A caller's request id is kept only if it is short and plain, so it cannot smuggle
# anything into logs or the audit row.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def state_hash(state: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of `state`: sorted keys, no spaces, UTF-8."""
    canonical = json.dumps(
        to_jsonable_python(state, fallback=str),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditRecord:
    """What a request's audit row will say; routes fill in the target and the states."""

    def __init__(self, request_id: str, method: str, path: str, audited: bool) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.audited = audited
        # Set to name the action yourself; else `<area>.<route function>`.
        self.action: str | None = None
        self.target_ref: str | None = None
        self.business_line: str | None = None
        self.before_hash: str | None = None
        self.after_hash: str | None = None
        self.detail: dict[str, Any] = {}
        self.written = False

    def target(self, kind: str, id: str, business_line: str | None = None) -> None:
        self.target_ref = f"{kind}/{id}"
        if business_line is not None:
            self.business_line = business_line

    def before(self, state: Any) -> None:
        self.before_hash = None if state is None else state_hash(state)

    def after(self, state: Any) -> None:
        self.after_hash = None if state is None else state_hash(state)


def get_audit(request: Request) -> AuditRecord:
    found = getattr(request.state, AUDIT_STATE_KEY, None)
    if isinstance(found, AuditRecord):
        return found
    # Without the middleware (an app built by hand), nothing is written: say so loudly.
    record = AuditRecord(_request_id(request.headers.get(REQUEST_ID_HEADER)), "", "", False)
    setattr(request.state, AUDIT_STATE_KEY, record)
    return record


AuditDep = Annotated[AuditRecord, Depends(get_audit)]


def _request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _action(scope: Scope) -> str:
    """`<area>.<route function>`: the area is the route's first tag (its router's), so the
    routes of one area read alike whichever module holds them (`campaigns.approve`)."""
    route = scope.get("route") or _route_for(scope)
    endpoint = getattr(route, "endpoint", None) or scope.get("endpoint")
    if endpoint is None:
        return "unrouted"
    tags = getattr(route, "tags", None) or []
    area = str(tags[0]) if tags else str(getattr(endpoint, "__module__", "")).rsplit(".", 1)[-1]
    return f"{area}.{getattr(endpoint, '__name__', 'unknown')}"


def _route_for(scope: Scope) -> Any:
    """The route of a call refused before routing (413 on its body, say)."""
    for route in iter_route_contexts(scope["app"].routes):
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


class AuditMiddleware:
    """Request ids for every request; an audit row for every audited call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.lower().encode())
        request_id = _request_id(given.decode("latin-1") if given else None)
        method = scope["method"]
        audited = method in MUTATING_METHODS and guarded(scope["path"])
        record = AuditRecord(request_id, method, scope["path"], audited)
        scope.setdefault("state", {})[AUDIT_STATE_KEY] = record

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
                # Written before the answer goes out: whoever sees the answer can find the row.
                await self._write(scope, record, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answered 500 further out (by the app's last-resort handler): audited as such.
            await self._write(scope, record, 500)
            raise

    async def _write(self, scope: Scope, record: AuditRecord, status: int) -> None:
        if not record.audited or record.written:
            return
        record.written = True
        principal = scope.get("state", {}).get(STATE_KEY)
        if not isinstance(principal, Principal):
            return  # 401 or 429: see the module's docstring
        row = AuditRow(
            actor=principal.id,
            role=principal.role,
            business_line=record.business_line or _only_line(principal),
            # Cut to the columns' sizes: a long path must not cost the row.
            action=(record.action or _action(scope))[:64],
            target=(record.target_ref or record.path)[:400],
            request_id=record.request_id,
            status=status,
            before_hash=record.before_hash,
            after_hash=record.after_hash,
            detail={
                "method": record.method,
                "path": record.path,
                "principal": principal.name,
                **record.detail,
            },
        )
        state = cast(ApiState, scope["app"].state.cjo)
        try:
            if state.sessions is None:
                raise RuntimeError("the database is not connected")
            await AuditTrail(state.sessions).append(row)
        except Exception:  # noqa: BLE001 - the call is done; its record must not vanish
            # The change (if any) has been made and cannot be taken back here; the row goes
            # to the log in full so that it can be restored from there.
            log.exception("audit row not written", **row.model_dump(mode="json"))


def _only_line(principal: Principal) -> str | None:
    """A principal of one business line acts in that line, whatever the route said."""
    lines = principal.business_lines
    if len(lines) == 1 and not principal.sees_all:
        return next(iter(lines))
    return None
