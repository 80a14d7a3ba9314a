"""`kassa support`: support's desk at the command line, from the settings' Temporal and
database.

`stuck` lists everything that needs a human, oldest first: the workflows whose
NeedsAttention says why (kassa/search.py), and the orders that have not ended although their
checkout no longer runs (terminated, failed, or never started: nothing will move them on).
`show ORDER` tells one order's whole story: the order row, its checkout as Temporal has it
(search attributes, current details, pending activities with their last failure), its
refunds and its ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from db import audit, ledger, orders, refunds
from kassa import search
from kassa.ids import checkout_workflow_id
from kassa.money import format_amount
from orchestration.client import checkout_status

ATTENTION_QUERY = "NeedsAttention IS NOT NULL"
NOT_RUNNING = "checkout_not_running"  # the `what` of an unfinished order nothing moves on
QUERY_WITHIN = timedelta(seconds=5)  # a closed workflow's details need a worker to answer


@dataclass(frozen=True)
class Stuck:
    since: datetime  # the workflow's start, or the order's last change
    what: str  # a NeedsAttention value, or NOT_RUNNING
    order_id: str
    customer_id: str
    amount: str
    status: str
    workflow: str  # its id and how it stands


def _amount(attributes: TypedSearchAttributes) -> str:
    amount, currency = attributes.get(search.AMOUNT_MINOR), attributes.get(search.CURRENCY)
    if amount is None:
        return ""
    return format_amount(amount, currency) if currency else f"{amount} (minor units)"


def _state(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "none"


async def stuck(client: Client, sessions, limit: int = 500) -> list[Stuck]:
    """Everything that needs a human, oldest first (at most `limit` of each source)."""
    found: dict[str, Stuck] = {}
    async for execution in client.list_workflows(ATTENTION_QUERY, limit=limit):
        attributes = execution.typed_search_attributes
        refund_status = attributes.get(search.REFUND_STATUS)
        status = attributes.get(search.PAYMENT_STATUS) or (
            f"refund {refund_status}" if refund_status else ""
        )
        found[execution.id] = Stuck(
            since=execution.start_time,
            what=attributes.get(search.NEEDS_ATTENTION),
            order_id=attributes.get(search.ORDER_ID) or "",
            customer_id=attributes.get(search.CUSTOMER_ID) or "",
            amount=_amount(attributes),
            status=status,
            workflow=f"{execution.id} ({_state(execution.status)})",
        )
    async with sessions() as session:
        unfinished = await orders.unfinished(session, limit)
    asking = asyncio.Semaphore(10)

    async def status_of(order_id: str) -> WorkflowExecutionStatus | None:
        async with asking:
            return await checkout_status(client, order_id)

    states = await asyncio.gather(*(status_of(order.order_id) for order in unfinished))
    for order, state in zip(unfinished, states, strict=True):
        workflow_id = checkout_workflow_id(order.order_id)
        if state == WorkflowExecutionStatus.RUNNING or workflow_id in found:
            continue
        found[workflow_id] = Stuck(
            since=order.updated_at,
            what=NOT_RUNNING,
            order_id=order.order_id,
            customer_id=order.customer_id,
            amount=format_amount(order.amount, order.currency),
            status=str(order.status),
            workflow=f"{workflow_id} ({_state(state)})",
        )
    return sorted(found.values(), key=lambda row: row.since)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def render_stuck(rows: list[Stuck]) -> str:
    if not rows:
        return "Nothing needs a human."
    header = ["SINCE", "NEEDS", "ORDER", "CUSTOMER", "AMOUNT", "STATUS", "WORKFLOW"]
    cells = [
        [_at(r.since), r.what, r.order_id, r.customer_id, r.amount, r.status, r.workflow]
        for r in rows
    ]
    return table(header, cells) + f"\n{len(rows)} need a human."


async def show(client: Client, sessions, order_id: str) -> str | None:
    """One order's story as text; None if there is no such order."""
    async with sessions() as session:
        order = await orders.get(session, order_id)
        if order is None:
            return None
        order_refunds = await refunds.of_order(session, order_id, limit=100)
        transactions, more = await ledger.of_order(session, order_id, limit=100)
        actions = await audit.of_order(session, order_id, limit=100)
    money = order.currency
    lines = [
        f"Order {order.order_id}: {order.status}"
        + (f" ({order.reason_code})" if order.reason_code else ""),
        f"  {format_amount(order.amount, money)} for {order.customer_id} via {order.gateway}, "
        f"{order.payment_attempts} payment attempt(s); refunded "
        f"{format_amount(order.refunded_amount, money)}",
        f"  created {_at(order.created_at)}, changed {_at(order.updated_at)}, payment window "
        f"closes {_at(order.expires_at)}, paid {_at(order.paid_at)}",
    ]
    if order.status_reason:
        lines.append(f"  why: {order.status_reason}")
    lines += ["", *await _checkout(client, order_id)]
    lines += ["", "Refunds:" if order_refunds else "Refunds: none"]
    for refund in order_refunds:
        failure = f"; failed: {refund.failure_reason}" if refund.failure_reason else ""
        lines.append(
            f"  {refund.refund_id}  {refund.status}  {format_amount(refund.amount, money)}  "
            f"by {refund.requested_by}, {_at(refund.created_at)}: {refund.reason}{failure}"
        )
    lines += ["", "Ledger:" if transactions else "Ledger: nothing booked"]
    shown = None
    for txn, entry in transactions:
        if txn.id != shown:
            lines.append(f"  {_at(txn.created_at)}  {txn.kind}")
            shown = txn.id
        sign = "+" if entry.amount > 0 else ""
        lines.append(
            f"      {entry.account:<24} {sign}{format_amount(entry.amount, entry.currency)}"
        )
    if more:
        lines.append("  … more (GET /v1/orders/{order_id}/ledger pages through them all)")
    lines += ["", "Audit:" if actions else "Audit: no support action"]
    for entry in actions:
        before, after = entry.before.get("status"), entry.after.get("status")
        lines.append(
            f"  {_at(entry.created_at)}  {entry.actor} {entry.action} ({before} → {after}): "
            f"{entry.reason}"
        )
    return "\n".join(lines)


async def _checkout(client: Client, order_id: str) -> list[str]:
    handle = client.get_workflow_handle(checkout_workflow_id(order_id))
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return [f"Checkout {handle.id}: not in Temporal (never started, or past retention)"]
    attributes = described.typed_search_attributes
    lines = [f"Checkout {handle.id}: {_state(described.status)}"]
    if summary := await described.static_summary():
        lines.append(f"  summary: {summary}")
    shown = [
        f"{key.name}={value}"
        for key in search.SEARCH_ATTRIBUTES
        if (value := attributes.get(key)) is not None
    ]
    lines.append("  " + ", ".join(shown))
    try:
        metadata = await handle.query(
            "__temporal_workflow_metadata", result_type=WorkflowMetadata, rpc_timeout=QUERY_WITHIN
        )
        lines.append(f"  details: {metadata.current_details or '-'}")
    except RPCError as err:
        lines.append(f"  details: not available ({err.message})")
    pending = described.raw_description.pending_activities
    lines.append("  pending activities:" if pending else "  pending activities: none")
    for activity in pending:
        failure = activity.last_failure.message if activity.HasField("last_failure") else ""
        next_at = (
            activity.next_attempt_schedule_time.ToDatetime()
            if activity.HasField("next_attempt_schedule_time")
            else None
        )
        lines.append(
            f"    {activity.activity_type.name} ({activity.activity_id}): attempt "
            f"{activity.attempt}"
            + (f", last failure: {failure}" if failure else "")
            + (f", next attempt {next_at:%Y-%m-%d %H:%M:%S} UTC" if next_at else "")
        )
    return lines
