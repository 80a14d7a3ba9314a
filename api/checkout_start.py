"""Starting a checkout workflow and getting its payment page in one call (update-with-start).

Used by the API and by the tests, so both start checkouts exactly the same way.
"""

from __future__ import annotations

import asyncio

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from kassa.contracts import (
    SA_AMOUNT_MINOR,
    SA_CUSTOMER_ID,
    SA_GATEWAY,
    SA_ORDER_ID,
    SA_PAYMENT_STATUS,
    CheckoutInput,
    CheckoutView,
    OrderStatus,
    checkout_workflow_id,
)
from kassa.money import format_amount
from workflows.checkout import CheckoutWorkflow


class CheckoutAlreadyEnded(Exception):
    """A checkout for this order id ran before and is closed; ids are never reused."""


async def start_checkout(
    client: Client, checkout: CheckoutInput, task_queue: str, wait_seconds: float
) -> CheckoutView:
    """Start the checkout (or attach to the running one) and wait for its payment page.

    Raises TimeoutError when the page is not ready within `wait_seconds` (retrying is
    safe), CheckoutAlreadyEnded, or WorkflowUpdateFailedError.
    """
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        checkout,
        id=checkout_workflow_id(checkout.order_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_ORDER_ID, checkout.order_id),
                SearchAttributePair(SA_CUSTOMER_ID, checkout.customer_id),
                SearchAttributePair(SA_PAYMENT_STATUS, str(OrderStatus.CREATED)),
                SearchAttributePair(SA_GATEWAY, checkout.gateway),
                SearchAttributePair(SA_AMOUNT_MINOR, checkout.amount),
            ]
        ),
        static_summary=(
            f"Order {checkout.order_id}: {format_amount(checkout.amount, checkout.currency)} "
            f"for {checkout.customer_id} via {checkout.gateway}"
        ),
        static_details="\n".join(
            f"- {i.quantity} × {i.title} (`{i.sku}`) at "
            f"{format_amount(i.unit_amount, checkout.currency)}"
            for i in checkout.items
        ),
    )
    try:
        async with asyncio.timeout(wait_seconds):
            return await client.execute_update_with_start_workflow(
                CheckoutWorkflow.payment_session,
                start_workflow_operation=start,
                id="payment-session",  # a stable update id: a retried request gets one answer
            )
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        # What asyncio.timeout becomes inside the SDK: no worker answered in time.
        raise TimeoutError(f"no payment page within {wait_seconds}s") from err
    except WorkflowAlreadyStartedError as err:
        raise CheckoutAlreadyEnded(checkout.order_id) from err
    except RPCError as err:
        # The time-skipping test server says ALREADY_EXISTS where the dev server raises the above.
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            raise CheckoutAlreadyEnded(checkout.order_id) from err
        raise
    finally:
        # Retrieve a failed start's handle future, or asyncio logs it as never retrieved.
        future = getattr(start, "_workflow_handle", None)
        if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
            future.exception()
