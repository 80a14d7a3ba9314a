"""Replay tests: every recorded history in tests/histories must replay on today's workflow
code. A change that running checkouts could not replay fails here; guard such a change with
`workflow.patched(...)` (see the second test for what the failure looks like)."""

from __future__ import annotations

import base64

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from kassa.settings import Settings
from orchestration.temporal import data_converter
from tests.history_events import activity_types
from tests.support import HISTORIES
from tests.workflows.changed_checkouts import CheckoutWithPatchedStep, CheckoutWithUnguardedStep
from worker import WORKFLOWS
from workflows.fulfilment import AFTER_PAYMENT

RECORDED = sorted(HISTORIES.glob("*.json"))
# The replayer decodes with the converter the worker would use: with KASSA_PAYLOAD_KEYS set,
# encrypting (the recorded histories are plain; the codec leaves plain payloads as they are).
CONVERTER = data_converter(Settings())


def load(path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_histories_are_checked_in():
    names = {path.stem for path in RECORDED}
    assert {"checkout-fulfilled", "checkout-expired", "checkout-cancelled"} <= names


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays_on_current_code(path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=CONVERTER)
    await replayer.replay_workflow(load(path))


async def test_an_unguarded_change_fails_replay():
    replayer = Replayer(workflows=[CheckoutWithUnguardedStep], data_converter=CONVERTER)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES / "checkout-fulfilled.json"))


async def test_a_patched_change_replays():
    replayer = Replayer(workflows=[CheckoutWithPatchedStep], data_converter=CONVERTER)
    for path in RECORDED:
        await replayer.replay_workflow(load(path))


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays_with_payload_keys_configured(path):
    """Turning encryption on does not strand the checkouts already running: their plain
    payloads still decode."""
    key = base64.b64encode(bytes(range(32))).decode()
    keyed = data_converter(Settings(payload_keys={"k1": key}))
    await Replayer(workflows=WORKFLOWS, data_converter=keyed).replay_workflow(load(path))


def test_a_fulfilled_checkout_ran_the_steps_after_payment_in_their_order():
    """The history of a fulfilled checkout shows each step of workflows/fulfilment.py, in
    the order listed there, and no undo."""
    fulfilled = activity_types(load(HISTORIES / "checkout-fulfilled.json"))
    steps = [step.action.__name__ for step in AFTER_PAYMENT]
    assert [name for name in fulfilled if name in steps] == steps
    assert not {step.undo.__name__ for step in AFTER_PAYMENT if step.undo} & set(fulfilled)
