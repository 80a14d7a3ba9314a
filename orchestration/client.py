"""The one place that starts Kassa's workflows and talks to them from outside: the API's
routes, reconciliation and the CLI all come here. Workflows are named by their type names
(kassa/contracts.py), so this module imports no workflow code and no activity can reach a
workflow's module through it.

Every call is safe to repeat: ids derive from business ids, a repeated start attaches to
(or finds) the one there is, updates carry stable ids.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
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

from kassa import errors, search
from kassa.contracts import (
    CHECKOUT_WORKFLOW,
    RECONCILE_WORKFLOW,
    REDELIVER_WORKFLOW,
    REFUND_WORKFLOW,
    CheckoutInput,
    CheckoutView,
    PaymentEvent,
    ReconcileInput,
    ReconcileProgress,
    Redelivery,
    RefundEvent,
    RefundInput,
)
from kassa.ids import checkout_workflow_id, refund_workflow_id
from kassa.money import format_amount
from kassa.statuses import OrderStatus

log = structlog.get_logger("orchestration")


class CheckoutAlreadyEnded(Exception):
    """A checkout for this order id ran before and is closed; ids are never reused."""


async def start_checkout(
    client: Client, checkout: CheckoutInput, task_queue: str, wait_seconds: float
) -> CheckoutView:
    """Start the checkout (or attach to the running one) and wait for its payment page, in
    one call (update-with-start).

    Raises TimeoutError when the page is not ready within `wait_seconds` (retrying is
    safe), CheckoutAlreadyEnded, or WorkflowUpdateFailedError.
    """
    start = WithStartWorkflowOperation(
        CHECKOUT_WORKFLOW,
        checkout,
        id=checkout_workflow_id(checkout.order_id),
        task_queue=task_queue,
        result_type=CheckoutView,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(search.ORDER_ID, checkout.order_id),
                SearchAttributePair(search.CUSTOMER_ID, checkout.customer_id),
                SearchAttributePair(search.PAYMENT_STATUS, str(OrderStatus.CREATED)),
                SearchAttributePair(search.GATEWAY, checkout.gateway),
                SearchAttributePair(search.AMOUNT_MINOR, checkout.amount),
                SearchAttributePair(search.CURRENCY, checkout.currency),
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
                "payment_session",
                start_workflow_operation=start,
                id="payment-session",  # a stable update id: a retried request gets one answer
                result_type=CheckoutView,
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


async def ask_checkout(
    client: Client,
    order_id: str,
    update: str,
    arg: Any = None,
    *,
    update_id: str,
    pending: type[errors.KassaError],
    wait_seconds: float,
) -> CheckoutView | None:
    """Run an update on the order's checkout and return its answer. The checkout's refusal
    is raised as the catalogue's error it names; None when no checkout runs for the order;
    no answer within `wait_seconds` (no worker) raises `pending` (a 503: asking again with
    the same update id is safe)."""
    handle = client.get_workflow_handle(checkout_workflow_id(order_id))
    try:
        async with asyncio.timeout(wait_seconds):
            return await handle.execute_update(
                update, args=[] if arg is None else [arg], id=update_id, result_type=CheckoutView
            )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        raise pending() from err
    except WorkflowUpdateFailedError as err:
        if refused := errors.from_failure(err.cause):
            raise refused from err
        # Not a refusal of the checkout's: it ended (a failure support sees) mid-update.
        raise errors.CheckoutEnded(str(err.cause or err)) from err
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """How the workflow with this id stands; None if none ever ran (within retention)."""
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def checkout_status(client: Client, order_id: str) -> WorkflowExecutionStatus | None:
    """How the order's checkout workflow stands; None if none ran (within retention)."""
    return await _status(client, checkout_workflow_id(order_id))


async def checkout_runs(client: Client, order_id: str) -> bool:
    """Whether the order's checkout workflow still runs."""
    status = await _status(client, checkout_workflow_id(order_id))
    return status == WorkflowExecutionStatus.RUNNING


async def report_payment(client: Client, event: PaymentEvent) -> bool:
    """Hand a verified gateway callback to the order's checkout; False if none runs."""
    return await _signal(client, checkout_workflow_id(event.order_id), "payment_event", event)


async def ask_checkout_to_check(client: Client, order_id: str) -> bool:
    """Have the order's checkout ask the gateway about its payment now (`check_payment`);
    False if no checkout runs."""
    return await _signal(client, checkout_workflow_id(order_id), "check_payment")


async def report_refund(client: Client, event: RefundEvent) -> bool:
    """Hand a verified gateway callback about a refund to its workflow; False if none runs."""
    return await _signal(client, refund_workflow_id(event.refund_id), "refund_event", event)


async def _signal(client: Client, workflow_id: str, signal: str, *event) -> bool:
    """Send `signal` (with the event, if any); False if the workflow does not run."""
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, args=event)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        ids = {"event_id": event[0].event_id} if event else {}
        log.info("signal for no running workflow", workflow_id=workflow_id, signal=signal, **ids)
        return False
    return True


async def start_refund(client: Client, task_queue: str, refund: RefundInput) -> None:
    """Start the workflow of a reserved refund, once: a repeated request, or reconciliation
    resuming a reservation whose start never happened, finds the one there is."""
    summary = (
        f"Refund ({refund.kind}) of {format_amount(refund.amount, refund.currency)} "
        f"on order {refund.order_id}"
    )
    await _start_refund_workflow(
        client,
        task_queue,
        refund,
        summary,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_reconcile_order(
    client: Client, task_queue: str, order_id: str, request_id: str
) -> str:
    """Support's re-run of reconciliation for one order (ReconcileProgress.order_id): its
    captures against what it kept, and, unpaid with no checkout running, its end. The same
    request again (its X-Request-ID) joins the one started. Returns the workflow id."""
    workflow_id = f"reconcile-{order_id}-{request_id}"
    try:
        await client.start_workflow(
            RECONCILE_WORKFLOW,
            ReconcileInput(
                lookback_hours=0,  # unused: the order is compared whenever it ended
                progress=ReconcileProgress(since=datetime.now(UTC), order_id=order_id),
            ),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(search.ORDER_ID, order_id)]
            ),
            static_summary=f"Reconcile order {order_id} (support)",
        )
    except WorkflowAlreadyStartedError:
        pass  # this request was sent before, and its pass is over
    return workflow_id


async def start_redelivery(
    client: Client, task_queue: str, redelivery: Redelivery, request_id: str
) -> None:
    """Send a storefront webhook again, through a workflow of its own (retried like the
    first delivery). The same request again (its X-Request-ID) joins the one started."""
    summary = f"Redeliver webhook {redelivery.event_id} of order {redelivery.order_id}"
    try:
        await client.start_workflow(
            REDELIVER_WORKFLOW,
            redelivery,
            id=f"redeliver-{redelivery.event_id}-{request_id}",
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(search.ORDER_ID, redelivery.order_id)]
            ),
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass  # this request was sent before, and its delivery is over


async def refund_started(client: Client, refund_id: str) -> bool:
    """Whether a workflow runs, or ran, for this refund."""
    return await _status(client, refund_workflow_id(refund_id)) is not None


async def give_back(
    client: Client, task_queue: str, refund: RefundInput, event: PaymentEvent
) -> bool:
    """Start the refund of a capture no order keeps, recorded first (`refund` is
    RefundInput.for_stray of `event`); False if it was started before. Every report of the
    same capture, by callback or by reconciliation, reaches the same workflow: its id comes
    from the gateway payment and it is started with signal-with-start, so two reports start
    one refund."""
    summary = (
        f"Refund ({refund.kind}) of {format_amount(refund.amount, refund.currency)} "
        f"on order {event.order_id}: payment {event.payment_id}"
    )
    started = await _start_refund_workflow(
        client, task_queue, refund, summary, start_signal="report", start_signal_args=[event]
    )
    if not started:
        return False  # given back already, or on its way
    log.info(
        "stray capture", kind=refund.stray, order_id=event.order_id, payment_id=event.payment_id
    )
    return True


async def _start_refund_workflow(
    client: Client, task_queue: str, refund: RefundInput, summary: str, **options
) -> bool:
    """Start a refund's workflow under the id its refund id gives; False if one with that
    id runs or ran already (its refund id is never used twice)."""
    try:
        await client.start_workflow(
            REFUND_WORKFLOW,
            refund,
            id=refund_workflow_id(refund.refund_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
            **options,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
