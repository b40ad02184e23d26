"""Logs are JSON, carry workflow and run ids inside activities, and never show raw PII."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from cjo.runtime.log import configure_logging, get_logger, mask


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging binds the (captured) stderr of the moment; put things back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("call 13812345678 now", "call 138****5678 now"),
        ("+86 13812345678", "+86 138****5678"),
        ("id 110101199003071234", "id 110101********1234"),
        ("id 11010119900307123X", "id 110101********123X"),
        ("mail li.lei@example.com", "mail l***@example.com"),
        ("order 12345678901234567890", "order 12345678901234567890"),  # not a phone or ID
        ("amount 1381234567", "amount 1381234567"),  # ten digits: not a phone
    ],
)
def test_mask(raw: str, masked: str) -> None:
    assert mask(raw) == masked


def test_log_lines_are_json_with_masked_values(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    get_logger("test").info("sent", phone="13812345678", detail={"email": "a.b@example.cn"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "sent"
    assert line["phone"] == "138****5678"
    assert line["detail"] == {"email": "a***@example.cn"}
    assert line["level"] == "info"
    assert "timestamp" in line


def test_standard_logging_goes_through_the_same_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    logging.getLogger("thirdparty").warning("user 13900001111 failed")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "user 139****1111 failed"


async def test_activity_logs_carry_workflow_and_run_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)

    @activity.defn(name="log_probe")
    async def probe() -> None:
        get_logger("probe").info("inside")

    environment = ActivityEnvironment()
    await environment.run(probe)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    info = environment.info
    assert line["workflow_id"] == info.workflow_id
    assert line["run_id"] == info.workflow_run_id
    assert line["activity"] == info.activity_type
