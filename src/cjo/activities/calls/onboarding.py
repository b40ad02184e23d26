"""A registered `call` activity for mobile-banking onboarding: pick the tutorial track.

Shipped as the worked example of adding an activity (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cjo.activities.calls.registry import CallRequest, CallResult, register


class PickTutorialParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features_used: int = Field(ge=0, description="distinct app features the user has tried")
    days_since_install: int = Field(ge=0)
    advanced_after: int = Field(default=5, ge=1, description="features that mark a confident user")


@register(
    "onboarding.pick_tutorial",
    params=PickTutorialParams,
    outcomes=("advanced", "basic"),
    description="Choose the onboarding tutorial track from how much of the app a user has used.",
)
async def pick_tutorial(requests: Sequence[CallRequest[Any]]) -> list[CallResult]:
    results: list[CallResult] = []
    for request in requests:
        params: PickTutorialParams = request.params
        # Someone who found many features quickly needs tips, not a walkthrough.
        pace = params.features_used / max(params.days_since_install, 1)
        confident = params.features_used >= params.advanced_after or pace >= 1
        track = "advanced" if confident else "basic"
        results.append(CallResult(track, {"track": track, "pace": round(pace, 2)}))
    return results
