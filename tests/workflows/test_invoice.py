"""The invoice step: the worked example of docs/adding-a-step.md."""

from __future__ import annotations

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.models import Invoice
from kassa.contracts import CheckoutInput
from kassa.statuses import OrderStatus
from tests.support import new_checkout
from tests.workflows.conftest import entitlements, gateway_payment, order_row, pay


async def invoice_of(sessions, order_id: str) -> Invoice | None:
    async with sessions() as session:
        return await session.get(Invoice, f"inv_{order_id}")


async def test_a_fulfilled_order_has_its_invoice(started, sessions):
    checkout = new_checkout(amount=2500, quantity=2)
    view, handle = await started(checkout)
    await pay(view, handle)

    assert (await handle.result()).status == OrderStatus.FULFILLED
    invoice = await invoice_of(sessions, checkout.order_id)
    assert (invoice.status, invoice.amount, invoice.currency, invoice.customer_id) == (
        "issued",
        5000,
        "CNY",
        checkout.customer_id,
    )


class TestInvoiceFails:
    """If issuing the invoice fails for good, access is revoked and the buyer refunded."""

    @pytest.fixture
    def workflow_env(self, dev_env):  # compensation runs a child workflow: see test_refund
        return dev_env

    @pytest.fixture
    def replaced_activities(self):
        @activity.defn(name="issue_invoice")
        async def issue_fails(checkout: CheckoutInput) -> None:
            raise ApplicationError("invoice numbering is exhausted", non_retryable=True)

        return {"issue_invoice": issue_fails}

    async def test_access_and_money_are_undone(self, started, sessions, sandbox):
        checkout = new_checkout(amount=800)
        view, handle = await started(checkout)
        await pay(view, handle)

        result = await handle.result()

        assert result.status == OrderStatus.REFUNDED
        assert "void the invoice" in result.reason
        assert await entitlements(sessions, checkout.order_id, active_only=True) == []
        assert await entitlements(sessions, checkout.order_id) != []  # granted, then revoked
        assert (await order_row(sessions, checkout.order_id)).refunded_amount == 800
        assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 800
