"""What the sandbox gateway knows, and the JSON file that keeps it across restarts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import HTTPException

from gateways.emulators.faults import Faults


@dataclass
class SandboxConfig:
    public_url: str  # where buyers reach the payment pages
    api_key: str
    webhook_secret: str
    state_file: Path | None = None
    callback_max_attempts: int = 20  # about 15 minutes of retries with the backoff below
    callback_first_backoff: float = 0.2
    callback_max_backoff: float = 60.0
    faults: Faults | None = None  # misbehaviour from the start (KASSA_SANDBOX_FAULTS)

    def payment_url(self, payment_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/pay/{payment_id}"


@dataclass
class SandboxBehaviour:
    """Knobs for tests and demos (PUT /_emulator/behaviour)."""

    refunds_settle: Literal["instant", "later"] = "instant"  # later: POST .../settle
    fail_next_refund_calls: int = 0  # answer 500, with no effect
    faults: Faults = field(default_factory=Faults)


@dataclass
class SandboxState:
    """Everything the gateway knows; tests read it to see what the gateway saw."""

    file: Path | None = None  # None: nothing survives a restart
    payments: dict[str, dict] = field(default_factory=dict)
    by_order: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    outbox: dict[str, dict] = field(default_factory=dict)  # callbacks to deliver (outbox.py)
    callbacks: list[dict] = field(default_factory=list)  # one row per delivery attempt
    # The W3C trace context each payment's creation came with, by merchant order id (kept in
    # memory only): tests check that the trace reaches the gateway.
    traceparents: dict[str, str] = field(default_factory=dict)
    behaviour: SandboxBehaviour = field(default_factory=SandboxBehaviour)
    # Calls received, by "METHOD /route/{template}", and what the calls that act did (e.g.
    # "close: closed a pending payment"), in memory only: the benchmarks read them
    # (GET /_emulator/calls).
    calls: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)

    def save(self) -> None:
        if self.file is None:
            return
        tmp = self.file.with_suffix(".tmp")  # written aside, then renamed: never half a file
        saved = {"payments": self.payments, "refunds": self.refunds, "outbox": self.outbox}
        tmp.write_text(json.dumps(saved))
        tmp.replace(self.file)

    @classmethod
    def load(cls, file: Path | None) -> SandboxState:
        state = cls(file=file)
        if file is not None and file.exists():
            data = json.loads(file.read_text())
            state.payments, state.refunds = data["payments"], data["refunds"]
            state.outbox = data.get("outbox", {})  # files from before the outbox have none
            for payment in state.payments.values():  # the first payment of an order is its own
                state.by_order.setdefault(payment["merchant_order_id"], payment["id"])
        return state

    def current(self, payment: dict) -> dict:
        """Unpaid payments past their expiry are expired, whoever looks first."""
        if payment["status"] == "pending" and now() >= datetime.fromisoformat(
            payment["expires_at"]
        ):
            payment["status"] = "expired"
            self.save()
        return payment

    def lookup(self, payment_id: str | None = None, order_id: str | None = None) -> dict:
        if order_id is not None:
            payment_id = self.by_order.get(order_id)
        if payment_id not in self.payments:
            raise HTTPException(404, detail={"code": "payment_not_found"})
        return self.current(self.payments[payment_id])


def now() -> datetime:
    return datetime.now(UTC)
