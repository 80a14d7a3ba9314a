"""Ways a gateway misbehaves, on purpose and reproducibly.

Real gateways deliver callbacks late, twice, out of order or never; their API answers 5xx,
or times out after the effect happened (the payment was made but the answer was lost), or
is slow. Every choice is drawn from one seeded random generator, so a failing run can be
replayed with its seed (for a serial sequence of calls).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, Field


@dataclass
class Faults:
    seed: int = 0
    drop_callbacks: float = 0.0  # probability a callback is never delivered
    duplicate_callbacks: int = 0  # extra deliveries of every callback (same event id)
    delay_callbacks: float = 0.0  # seconds before a callback's first delivery
    reorder_callbacks: bool = False  # a contrary `payment.declined` follows each success
    api_errors: float = 0.0  # probability an API call answers 500, with no effect
    lost_answers: float = 0.0  # probability an API call has its effect but answers 504
    slow_seconds: float = 0.0  # added to every API call
    lose_next_answers: int = 0  # the next N API calls have their effect but answer 504
    fail_next_calls: int = 0  # the next N API calls fail (500, or the gateway's own) unapplied
    pay_before_close: float = 0.0  # probability the buyer pays just before a close arrives
    counts: dict[str, int] = field(default_factory=dict)  # what was injected, by kind

    def __post_init__(self) -> None:
        self._dice = random.Random(self.seed)

    def roll(self, kind: str, probability: float) -> bool:
        """Draw once; True (and counted) if the fault happens."""
        hit = probability > 0 and self._dice.random() < probability
        if hit:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        return hit

    def answer_lost(self) -> bool:
        """Whether this API call's answer is lost after its effect."""
        if self.lose_next_answers > 0:
            self.lose_next_answers -= 1
            self.count("lost_answers")
            return True
        return self.roll("lost_answers", self.lost_answers)

    def call_fails(self) -> bool:
        """Whether this API call fails before its effect (an error, and nothing happened)."""
        if self.fail_next_calls > 0:
            self.fail_next_calls -= 1
            self.count("api_errors")
            return True
        return self.roll("api_errors", self.api_errors)

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "counts"}


class FaultsIn(BaseModel):
    """Faults as the emulators' control routes take them (JSON)."""

    seed: int = 0
    drop_callbacks: float = Field(0.0, ge=0, le=1)
    duplicate_callbacks: int = Field(0, ge=0, le=10)
    delay_callbacks: float = Field(0.0, ge=0, le=60)
    reorder_callbacks: bool = False
    api_errors: float = Field(0.0, ge=0, le=1)
    lost_answers: float = Field(0.0, ge=0, le=1)
    slow_seconds: float = Field(0.0, ge=0, le=30)
    lose_next_answers: int = Field(0, ge=0, le=100)
    fail_next_calls: int = Field(0, ge=0, le=100)
    pay_before_close: float = Field(0.0, ge=0, le=1)

    def faults(self) -> Faults:
        return Faults(**self.model_dump())
