"""Risk (digital risk control): evaluate RiskPolicies for pages of users, and keep risk lists.

A page of requests is evaluated with one SQL statement per rule (per policy and moment),
never one per user (see `_risk_checks`). The outcome is the most severe action among the
matched rules (reject > review > pass), else the policy's default. Each decision is stored
under its request key, so a repeated request returns the first decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel
from temporalio import activity

from cjo.activities._base import ActivityError, new_id, utc
from cjo.activities.people.segments import segment_resolver
from cjo.activities.risk._checks import (
    LISTS,
    Findings,
    check_condition,
    check_list,
    check_velocity,
    load_profiles,
    texts,
)
from cjo.dsl import RiskPolicySpec
from cjo.dsl._resources import ListCheck, VelocityCheck
from cjo.steps.contracts import EvaluateRiskInput, EvaluateRiskResult, RiskRequest, RiskVerdict
from cjo.store.db import SessionFactory, transaction
from cjo.store.schema import RiskDecision

DECISIONS: sa.Table = SQLModel.metadata.tables[str(RiskDecision.__tablename__)]

SEVERITY: dict[str, int] = {"pass": 0, "review": 1, "reject": 2}


class InvalidRiskPolicyError(ActivityError):
    """A policy spec that does not validate as a RiskPolicy."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RiskListItem(_Model):
    value: str = Field(min_length=1, max_length=256)
    reason: str | None = None


class UpdateRiskListInput(_Model):
    business_line: str = "default"
    risk_list: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    add: list[RiskListItem] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    at: datetime


class UpdateRiskListResult(_Model):
    """How many entries were new, and how many were there to remove."""

    added: int
    removed: int


class RiskActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="risk.evaluate")
    async def evaluate(self, request: EvaluateRiskInput) -> EvaluateRiskResult:
        async with transaction(self._sessions) as connection:
            decided = await _stored(connection, [r.key for r in request.requests])
            pending: dict[str, RiskRequest] = {}
            for each in request.requests:
                if each.key not in decided:
                    pending.setdefault(each.key, each)
            groups = [(group, _policy(group[0])) for group in _groups(list(pending.values()))]
            listing = {
                r.user_id
                for group, policy in groups
                if any(isinstance(rule.if_, ListCheck) for rule in policy.rules)
                for r in group
            }
            profiles = await load_profiles(connection, listing)
            rows: list[dict[str, Any]] = []
            for group, policy in groups:
                rows.extend(await _decide(connection, group, policy, profiles))
            if rows:
                # Executed as many rows per statement as the parameter limit allows.
                created = await connection.execute(
                    insert(DECISIONS)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(*_VERDICT_COLUMNS),
                    rows,
                )
                decided.update(_verdicts(created))
                # A concurrent twin stored these first; its decision is the decision.
                decided.update(await _stored(connection, [r["key"] for r in rows]))
        return EvaluateRiskResult(results=[decided[r.key] for r in request.requests])

    @activity.defn(name="risk.update_list")
    async def update_list(self, request: UpdateRiskListInput) -> UpdateRiskListResult:
        added = removed = 0
        async with transaction(self._sessions) as connection:
            if request.add:
                entries = [
                    {
                        "business_line": request.business_line,
                        "list": request.risk_list,
                        "value": item.value,
                        "reason": item.reason,
                        "added_at": utc(request.at),
                    }
                    for item in request.add
                ]
                inserted = await connection.execute(
                    insert(LISTS).on_conflict_do_nothing().returning(LISTS.c.value), entries
                )
                added = len(inserted.all())
            if request.remove:
                deleted = await connection.execute(
                    LISTS.delete()
                    .where(
                        LISTS.c.business_line == request.business_line,
                        LISTS.c.list == request.risk_list,
                        LISTS.c.value == sa.any_(texts(request.remove)),
                    )
                    .returning(LISTS.c.value)
                )
                removed = len(deleted.all())
        return UpdateRiskListResult(added=added, removed=removed)


_VERDICT_COLUMNS = (
    DECISIONS.c.key,
    DECISIONS.c.user_id,
    DECISIONS.c.outcome,
    DECISIONS.c.matched,
    DECISIONS.c.id,
)


def _verdicts(rows: Iterable[Any]) -> dict[str, RiskVerdict]:
    return {
        row.key: RiskVerdict(
            key=row.key,
            user_id=row.user_id,
            outcome=row.outcome,
            matched=list(row.matched),
            decision_id=row.id,
        )
        for row in rows
    }


async def _stored(connection: AsyncConnection, keys: list[str]) -> dict[str, RiskVerdict]:
    if not keys:
        return {}
    found = await connection.execute(
        sa.select(*_VERDICT_COLUMNS).where(DECISIONS.c.key == sa.any_(texts(keys)))
    )
    return _verdicts(found)


def _groups(requests: Sequence[RiskRequest]) -> list[list[RiskRequest]]:
    """Requests that can share each rule's query: same policy, segments, zone and moment."""
    groups: dict[str, list[RiskRequest]] = {}
    for request in requests:
        fingerprint = json.dumps(
            [
                request.business_line,
                request.policy,
                request.policy_version,
                request.spec,
                request.segments,
                request.timezone,
                utc(request.at).isoformat(),
            ],
            sort_keys=True,
            default=str,
        )
        groups.setdefault(fingerprint, []).append(request)
    return list(groups.values())


def _policy(request: RiskRequest) -> RiskPolicySpec:
    try:
        return RiskPolicySpec.model_validate(request.spec)
    except ValidationError as error:
        raise InvalidRiskPolicyError(
            f"risk policy '{request.policy}' is not valid: {error}"
        ) from None


async def _decide(
    connection: AsyncConnection,
    group: list[RiskRequest],
    policy: RiskPolicySpec,
    profiles: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    first = group[0]
    at = utc(first.at)
    user_ids = list(dict.fromkeys(r.user_id for r in group))
    findings = Findings()
    for rule in policy.rules:
        check = rule.if_
        if isinstance(check, ListCheck):
            variables = {
                r.user_id: {**r.context, "user": profiles[r.user_id], "now": at} for r in group
            }
            await check_list(connection, rule.id, check, first.business_line, variables, findings)
        elif isinstance(check, VelocityCheck):
            await check_velocity(
                connection,
                rule.id,
                check.velocity,
                business_line=first.business_line,
                at=at,
                user_ids=user_ids,
                findings=findings,
            )
        else:
            await check_condition(
                connection,
                rule.id,
                check,
                at=at,
                timezone=first.timezone,
                resolve=segment_resolver(first.segments),
                user_ids=user_ids,
                findings=findings,
            )
    actions = {rule.id: rule.then for rule in policy.rules}
    rows = []
    for request in group:
        matched = findings.matched.get(request.user_id, [])
        outcome = max(
            (actions[rule_id] for rule_id in matched),
            key=SEVERITY.__getitem__,
            default=policy.default,
        )
        rows.append(
            {
                "id": new_id(),
                "key": request.key,
                "business_line": request.business_line,
                "policy": request.policy,
                "policy_version": request.policy_version,
                "user_id": request.user_id,
                "outcome": outcome,
                "matched": matched,
                "detail": findings.detail.get(request.user_id, {}),
                "at": at,
            }
        )
    return rows
