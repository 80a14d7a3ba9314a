"""The published contract tells the truth: schemathesis, driven by nothing but the API's own
OpenAPI, sends positive and negative requests (examples, coverage, fuzzing, stateful phases)
with the storefront key and with the support key, over HTTP against the running stack, and
every check it has must pass. Its positive requests must be able to create checkouts.

Schemathesis is synchronous; the API, the worker and Temporal's client live on this test's
event loop, so the run goes to a thread while the loop keeps serving it."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import schemathesis
from schemathesis.engine import Status, events
from schemathesis.engine import from_schema as engine_for
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from sqlalchemy import func, select

from db.models import Order
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY
from kassa.statuses import OrderStatus

pytestmark = pytest.mark.e2e

# Bounds: together both runs add about a minute to the suite.
MAX_EXAMPLES = int(os.environ.get("KASSA_CONTRACT_EXAMPLES", "10"))
MAX_SECONDS = int(os.environ.get("KASSA_CONTRACT_SECONDS", "30"))


@dataclass
class Outcome:
    cases: int = 0
    phases: dict[str, str] = field(default_factory=dict)  # phase: how it went, how many cases
    statuses: Counter = field(default_factory=Counter)  # "POST /v1/checkouts 201": count
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""


def _fresh_idempotency_key(context, case, kwargs) -> None:
    """A storefront follows the contract: a new Idempotency-Key for each new request. The
    generator repeats values ("0" again and again), and the same key with another body is
    rightly a 422, so a valid generated key is replaced by a fresh valid one; a missing or
    invalid key (negative data) is left as it is."""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 1 <= len(key) <= 255:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


@contextmanager
def fresh_idempotency_keys():
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(_fresh_idempotency_key, "before_call")
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(_fresh_idempotency_key)


def run_schemathesis(api_url: str, key: str, seed: int) -> Outcome:
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "max-time": MAX_SECONDS,
            "base-url": api_url,
            "auth": {"openapi": {"HTTPBearer": {"bearer": key}}},
            "workers": 1,
            "request-timeout": 30,
            "generation": {
                "mode": "all",  # positive and negative
                "max-examples": MAX_EXAMPLES,
                "database": "none",
            },
            "checks": {"enabled": True},
            "phases": {"stateful": {"max-steps": 20}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config)
    outcome = Outcome()
    cases: Counter = Counter()
    for event in engine_for(schema).execute():
        if isinstance(event, events.PhaseFinished):
            outcome.phases[event.phase.name] = f"{event.status}, {cases[event.phase.name]} cases"
        elif isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            outcome.cases += len(recorder.cases)
            cases[getattr(event, "phase", "fuzzing")] += len(recorder.cases)
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is not None and case_id in recorder.cases:
                    label = recorder.cases[case_id].value.operation.label
                    outcome.statuses[f"{label} {interaction.response.status_code}"] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        steps = " | ".join(step.curl for step in check.failure_info.steps)
                        outcome.failures.append(
                            f"[{check.name}] {failure.operation}: {failure.title}: "
                            f"{failure.message}\n    {steps or case_id}"
                        )
        elif isinstance(event, events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            outcome.stop_reason = str(event.stop_reason)
            for failure in event.failures:
                outcome.failures.append(f"[after run] {failure.title}: {failure.message}")
    return outcome


async def orders_since(sessions, since: datetime) -> Counter:
    """The orders created since then, by status, and how many got a payment page."""
    async with sessions() as session:
        rows = await session.execute(
            select(Order.status, func.count(), func.count(Order.payment_url))
            .where(Order.created_at >= since)
            .group_by(Order.status)
        )
        created = Counter()
        for status, n, with_page in rows:
            created[str(status)] += n
            created["with a payment page"] += with_page
        return created


async def cancel_what_waits(stack, sessions, since: datetime) -> None:
    """The generated checkouts wait for payment for up to a day, asking the gateway every
    few seconds: cancel them, so that the rest of the suite does not pay for them."""
    async with sessions() as session:
        waiting = list(
            await session.scalars(
                select(Order.order_id).where(
                    Order.created_at >= since,
                    Order.status.in_([OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]),
                )
            )
        )
    async with stack.http() as api:
        for order_id in waiting:
            response = await api.post(f"/v1/orders/{order_id}/cancel")
            assert response.status_code in (200, 409), response.text


@pytest.mark.timeout(240)
async def test_schemathesis_finds_the_contract_true(stack, sessions):
    seed = int(os.environ.get("KASSA_CONTRACT_SEED", random.randrange(2**32)))
    print(f"schemathesis seed {seed} (KASSA_CONTRACT_SEED)")
    async with sessions() as session:
        since = await session.scalar(select(func.now()))
    outcomes = {}
    with fresh_idempotency_keys():
        for who, key in (
            ("storefront", DEV_STOREFRONT_KEY),
            ("support", DEV_SUPPORT_KEY),
        ):
            outcomes[who] = await asyncio.to_thread(run_schemathesis, stack.api_url, key, seed)
    created = await orders_since(sessions, since)
    await cancel_what_waits(stack, sessions, since)

    report = []
    for who, outcome in outcomes.items():
        report.append(
            f"{who}: {outcome.cases} cases, stopped: {outcome.stop_reason}, "
            f"{len(outcome.failures)} failures, {len(outcome.errors)} errors"
        )
        report += [f"  {phase}: {how}" for phase, how in outcome.phases.items()]
        report += [f"  {status}: {n}" for status, n in sorted(outcome.statuses.items())]
        report += [f"  FAILURE {f}" for f in outcome.failures]
        report += [f"  ERROR {e}" for e in outcome.errors]
    orders = created.total() - created["with a payment page"]
    report.append(f"orders created by schema-driven requests: {orders} {dict(created)}")
    print("\n".join(report))
    assert all(not o.failures and not o.errors for o in outcomes.values()), "\n".join(report)
    assert orders > 0, "schemathesis never created a checkout"
