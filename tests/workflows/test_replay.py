"""Replay tests: every recorded history in tests/histories must replay on today's workflow
code. A change that running checkouts could not replay fails here; guard such a change with
`workflow.patched(...)` (see the second test for what the failure looks like)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from orchestration.temporal import DATA_CONVERTER
from tests.history_events import activity_types
from tests.support import HISTORIES
from tests.workflows.changed_checkouts import CheckoutWithPatchedStep, CheckoutWithUnguardedStep
from worker import WORKFLOWS
from workflows.fulfilment import AFTER_PAYMENT

RECORDED = sorted(HISTORIES.glob("*.json"))


def load(path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_histories_are_checked_in():
    names = {path.stem for path in RECORDED}
    assert {"checkout-fulfilled", "checkout-expired", "checkout-cancelled"} <= names


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays_on_current_code(path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(load(path))


async def test_an_unguarded_change_fails_replay():
    replayer = Replayer(workflows=[CheckoutWithUnguardedStep], data_converter=DATA_CONVERTER)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES / "checkout-fulfilled.json"))


async def test_a_patched_change_replays():
    replayer = Replayer(workflows=[CheckoutWithPatchedStep], data_converter=DATA_CONVERTER)
    for path in RECORDED:
        await replayer.replay_workflow(load(path))


def test_a_fulfilled_checkout_ran_the_steps_after_payment_in_their_order():
    """The history of a fulfilled checkout shows each step of workflows/fulfilment.py, in
    the order listed there, and no undo."""
    fulfilled = activity_types(load(HISTORIES / "checkout-fulfilled.json"))
    steps = [step.action.__name__ for step in AFTER_PAYMENT]
    assert [name for name in fulfilled if name in steps] == steps
    assert not {step.undo.__name__ for step in AFTER_PAYMENT if step.undo} & set(fulfilled)
