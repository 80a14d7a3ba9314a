"""Every step after payment, failing for good: the undos of what was done run, last first,
and the buyer is refunded in full. Parametrised over workflows/fulfilment.py, so a new step
is covered by being listed there.

On the dev server: compensation refunds through a child workflow, whose activity tasks the
Java time-skipping server does not hand out."""

from __future__ import annotations

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kassa.contracts import CheckoutInput
from kassa.statuses import OrderStatus
from tests.support import new_checkout
from tests.workflows.conftest import gateway_payment, order_row, pay
from workflows.fulfilment import AFTER_PAYMENT


def undone_after(failed: int) -> list[str]:
    """What compensation says it undid when step `failed` fails: the undos registered so far
    (the failing step's own included: it may have done part of its work), last first, then
    the refund."""
    undos = [step.undoes for step in AFTER_PAYMENT[: failed + 1] if step.undo is not None]
    return [*reversed(undos), "refund the payment"]


@pytest.fixture
def workflow_env(dev_env):
    return dev_env


@pytest.fixture(params=range(len(AFTER_PAYMENT)), ids=[s.does for s in AFTER_PAYMENT])
def failing(request) -> int:
    return request.param


@pytest.fixture
def replaced_activities(failing):
    name = AFTER_PAYMENT[failing].action.__name__

    @activity.defn(name=name)
    async def fails(checkout: CheckoutInput) -> None:
        raise ApplicationError(f"{name} is out of order", non_retryable=True)

    return {name: fails}


async def test_a_failing_step_undoes_what_was_done_and_refunds(failing, started, sessions, sandbox):
    checkout = new_checkout(amount=1200)
    view, handle = await started(checkout)
    await pay(view, handle)

    result = await handle.result()

    step = AFTER_PAYMENT[failing]
    assert result.status == OrderStatus.REFUNDED
    assert f"{step.action.__name__} is out of order" in result.reason
    assert result.reason.endswith("compensated: " + ", ".join(undone_after(failing)))
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("refunded", 1200)
    assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 1200
