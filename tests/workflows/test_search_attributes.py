"""What support sees of a checkout in the Temporal UI: its search attributes set and cleared
as the checkout goes, its details, its named timers. On the time-skipping server (time
passes in milliseconds) unless a story needs a child refund workflow (the dev server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from kassa import search
from kassa.contracts import CancelRequest, ReviewDecision
from kassa.ids import refund_workflow_id, stray_refund_id
from kassa.statuses import OrderStatus, PaymentOutcome
from tests.support import buyer_acts, eventually, new_checkout
from tests.workflows.conftest import gateway_event, pay
from workflows.checkout import CheckoutWorkflow


async def attributes(handle):
    return (await handle.describe()).typed_search_attributes


async def current_details(handle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def shows(handle, key, value) -> bool:
    return (await attributes(handle)).get(key) == value


async def held(started, **overrides):
    """A checkout paid with another amount (1.00 CNY of 99.00), found by the cancel's close:
    held for support."""
    checkout = new_checkout(**overrides)
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, amount=100)
    answer = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("changed mind", "storefront:shop")
    )
    assert answer.status == OrderStatus.ON_HOLD
    return checkout, handle


async def test_a_waiting_checkout_shows_its_currency_and_deadline(started):
    checkout = new_checkout(currency="JPY", amount=5000)
    view, handle = await started(checkout)

    shown = await attributes(handle)
    assert shown.get(search.PAYMENT_STATUS) == "awaiting_payment"
    assert (shown.get(search.AMOUNT_MINOR), shown.get(search.CURRENCY)) == (5000, "JPY")
    assert abs(shown.get(search.PAYMENT_EXPIRES_AT) - view.payment.expires_at) < timedelta(
        seconds=1
    )
    assert shown.get(search.NEEDS_ATTENTION) is None
    assert (await current_details(handle)).startswith(
        "Waiting for the buyer to pay 5000 JPY at sandbox since "
    )
    await handle.terminate("test finished")


async def test_a_decline_the_buyer_may_retry_is_told_apart_from_an_untouched_checkout(started):
    checkout = new_checkout(max_payment_attempts=2)
    view, handle = await started(checkout)

    await buyer_acts(view.payment.payment_url, "declined")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.DECLINED)
    )
    await eventually(lambda: shows(handle, search.PAYMENT_STATUS, "declined_may_retry"))
    assert (await current_details(handle)).startswith("Declined; waiting for the buyer")

    retried = await handle.execute_update(CheckoutWorkflow.retry_payment)
    assert (await attributes(handle)).get(search.PAYMENT_STATUS) == "awaiting_payment"
    assert "(attempt 2 of 2)" in await current_details(handle)
    await pay(retried, handle)

    assert (await handle.result()).status == OrderStatus.FULFILLED
    shown = await attributes(handle)
    assert shown.get(search.PAYMENT_STATUS) == "fulfilled"
    assert shown.get(search.NEEDS_ATTENTION) is None


async def test_a_held_payment_needs_attention_and_escalates_when_overdue(
    started, time_skipping_env
):
    checkout, handle = await held(started, hold_escalate_hours=2)

    shown = await attributes(handle)
    assert shown.get(search.PAYMENT_STATUS) == "on_hold"
    assert shown.get(search.NEEDS_ATTENTION) == "held_payment"
    details = await current_details(handle)
    assert details.startswith("Held for support: paid 1.00 CNY instead of 99.00 CNY")

    await time_skipping_env.sleep(timedelta(hours=2, seconds=1))
    await eventually(lambda: shows(handle, search.NEEDS_ATTENTION, "held_payment_overdue"))
    assert (await current_details(handle)).startswith("Overdue: held for support for 2 h")
    await time_skipping_env.sleep(timedelta(hours=2))
    assert (await current_details(handle)).startswith("Overdue: held for support for 4 h")
    # Escalating never ends the hold: support still decides.
    assert (await attributes(handle)).get(search.PAYMENT_STATUS) == "on_hold"
    assert (await handle.query(CheckoutWorkflow.state)).status == OrderStatus.ON_HOLD
    await handle.terminate("test finished: support's refund runs on the dev server below")


async def test_a_close_that_keeps_failing_needs_attention_until_it_succeeds(
    started, time_skipping_env, faults
):
    checkout = new_checkout()
    view, handle = await started(checkout)
    await faults(api_errors=1.0)  # every gateway call answers 500 from now on

    await time_skipping_env.sleep(timedelta(minutes=15, seconds=1))  # the window closes
    for _ in range(15):  # the close retries for 10 minutes before support is told
        if await shows(handle, search.NEEDS_ATTENTION, "gateway_unreachable"):
            break
        await time_skipping_env.sleep(timedelta(minutes=1))
    assert await shows(handle, search.NEEDS_ATTENTION, "gateway_unreachable")
    assert "keeps failing" in await current_details(handle)
    await faults()

    assert (await handle.result()).status == OrderStatus.EXPIRED
    shown = await attributes(handle)
    assert shown.get(search.NEEDS_ATTENTION) is None
    assert shown.get(search.PAYMENT_STATUS) == "expired"


class TestReview:
    """On the dev server: support's refund of a held payment is a child workflow."""

    @pytest.fixture
    def workflow_env(self, dev_env):
        return dev_env

    async def test_refunding_a_held_payment_clears_its_attention(
        self, started, workflow_env, sandbox
    ):
        checkout, handle = await held(started)
        assert (await attributes(handle)).get(search.NEEDS_ATTENTION) == "held_payment"

        ended = await handle.execute_update(
            CheckoutWorkflow.review, ReviewDecision("wrong amount, give it back", "support:alice")
        )

        assert ended.status == OrderStatus.FAILED
        shown = await attributes(handle)
        assert shown.get(search.PAYMENT_STATUS) == "failed"
        assert shown.get(search.NEEDS_ATTENTION) is None
        # The refund says whose money it gives back, how much, and why (its kind).
        payment_id = sandbox.by_order[checkout.order_id]
        refund = workflow_env.client.get_workflow_handle(
            refund_workflow_id(stray_refund_id(payment_id))
        )
        refunded = await refund.describe()
        shown = refunded.typed_search_attributes
        assert shown.get(search.REFUND_KIND) == "amount_mismatch"
        assert shown.get(search.REFUND_STATUS) == "succeeded"
        assert (shown.get(search.ORDER_ID), shown.get(search.CUSTOMER_ID)) == (
            checkout.order_id,
            checkout.customer_id,
        )
        assert (shown.get(search.AMOUNT_MINOR), shown.get(search.CURRENCY)) == (100, "CNY")
        assert shown.get(search.PAYMENT_STATUS) is None
        assert await refunded.static_summary() == (
            f"Refund (amount_mismatch) of 1.00 CNY on order {checkout.order_id}"
        )
