"""A circuit breaker per provider: stop sending to a provider that keeps failing.

closed ──(`failures` retryable failures in a row)──▶ open ──(`reset` seconds)──▶ half-open
half-open lets one trial through: it succeeding closes the breaker, failing re-opens it.

While open, the dispatcher puts the provider's messages back until the breaker may let a
trial through, without spending one of their attempts: the provider failed, not they.
The state lives in the dispatcher process; each dispatcher judges a provider by what it
sees itself.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
HISTORY = 100


@dataclass(frozen=True, slots=True)
class Transition:
    state: BreakerState
    at: float  # time.monotonic()


class CircuitBreaker:
    def __init__(self, *, failures: int, reset_seconds: float) -> None:
        self._threshold = failures
        self._reset = reset_seconds
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        # The last transitions, for logs, health checks and tests.
        self.transitions: deque[Transition] = deque(maxlen=HISTORY)

    @property
    def state(self) -> BreakerState:
        return self._state

    def admit(self, now: float | None = None) -> float | None:
        """None: send now. Otherwise the seconds to put the message back for."""
        now = time.monotonic() if now is None else now
        if self._state == "open":
            reopens_in = self._opened_at + self._reset - now
            if reopens_in > 0:
                return reopens_in
            self._move("half_open", now)
        if self._state == "half_open":
            if self._trial_in_flight:
                # The trial's answer is due soon; look again shortly rather than a whole reset.
                return min(self._reset, 1.0)
            self._trial_in_flight = True
        return None

    def succeeded(self, now: float | None = None) -> None:
        """The provider answered (accepted the message, or rejected it for good)."""
        self._failures = 0
        self._trial_in_flight = False
        if self._state != "closed":
            self._move("closed", time.monotonic() if now is None else now)

    def failed(self, now: float | None = None) -> None:
        """A retryable failure: the provider did not answer, or answered 5xx."""
        now = time.monotonic() if now is None else now
        self._failures += 1
        self._trial_in_flight = False
        if self._state == "half_open" or (
            self._state == "closed" and self._failures >= self._threshold
        ):
            self._opened_at = now
            self._move("open", now)

    def released(self) -> None:
        """An attempt that tells nothing about the provider's health (a 429) ended."""
        self._trial_in_flight = False

    def _move(self, state: BreakerState, now: float) -> None:
        self._state = state
        self.transitions.append(Transition(state, now))
