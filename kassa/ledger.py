"""The double-entry ledger (资金流水): every money movement is one transaction whose entries
sum to zero per currency. Debits are positive, credits negative.

Accounts:
  gateway:<name>  money the gateway holds for us (asset; its balance is what we can refund)
  revenue         what buyers paid for orders (credit balance)
  refunds         what went back to buyers (contra-revenue, debit balance)
  unallocated     money captured that no order keeps (late or second payments), owed back

The database enforces balance and append-only (migration 0002); `post` makes a retried
activity a no-op through the transaction's unique key.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateways.base import PaymentGateway, payments_of_order
from kassa.contracts import OrderStatus, PaymentOutcome, RefundStatus
from kassa.models import LedgerEntry, LedgerTransaction, Order, Refund, StrayCapture

REVENUE = "revenue"
REFUNDS = "refunds"
UNALLOCATED = "unallocated"


def gateway_account(gateway: str) -> str:
    return f"gateway:{gateway}"


async def post(
    session: AsyncSession,
    key: str,
    order_id: str,
    kind: str,
    currency: str,
    entries: dict[str, int],
) -> bool:
    """Post one transaction inside the caller's database transaction; False if `key` was
    posted before (nothing is written then)."""
    txn_id = await session.scalar(
        insert(LedgerTransaction)
        .values(key=key, order_id=order_id, kind=kind)
        .on_conflict_do_nothing(index_elements=[LedgerTransaction.key])
        .returning(LedgerTransaction.id)
    )
    if txn_id is None:
        return False
    await session.execute(
        insert(LedgerEntry),
        [
            {"transaction_id": txn_id, "account": account, "amount": amount, "currency": currency}
            for account, amount in entries.items()
        ],
    )
    return True


async def post_capture(session: AsyncSession, order: Order) -> bool:
    return await post(
        session,
        f"capture:{order.order_id}",
        order.order_id,
        "capture",
        order.currency,
        {gateway_account(order.gateway): order.amount, REVENUE: -order.amount},
    )


async def post_refund(session: AsyncSession, order: Order, refund: Refund) -> bool:
    return await post(
        session,
        f"refund:{refund.refund_id}",
        order.order_id,
        "refund",
        refund.currency,
        {REFUNDS: refund.amount, gateway_account(order.gateway): -refund.amount},
    )


async def post_stray_capture(session: AsyncSession, stray: StrayCapture) -> bool:
    return await post(
        session,
        f"stray:{stray.payment_id}",
        stray.order_id,
        "stray_capture",
        stray.currency,
        {gateway_account(stray.gateway): stray.amount, UNALLOCATED: -stray.amount},
    )


async def post_stray_refund(session: AsyncSession, stray: StrayCapture) -> bool:
    return await post(
        session,
        f"stray-refund:{stray.payment_id}",
        stray.order_id,
        "stray_refund",
        stray.currency,
        {UNALLOCATED: stray.amount, gateway_account(stray.gateway): -stray.amount},
    )


async def check(sessions: async_sessionmaker, gateways: dict[str, PaymentGateway]) -> list[str]:
    """Every violation of the ledger's invariants; an empty list means the books are right."""
    problems: list[str] = []
    async with sessions() as session:
        unbalanced = await session.execute(
            select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
            .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
            .having(func.sum(LedgerEntry.amount) != 0)
        )
        problems += [f"transaction {t} does not balance in {c}: {s}" for t, c, s in unbalanced]

        # Per order: what the ledger says the gateway holds, and what was refunded.
        gateway_side = LedgerEntry.account.like("gateway:%")
        held = func.coalesce(func.sum(LedgerEntry.amount).filter(gateway_side), 0)
        refunded = func.coalesce(
            func.sum(LedgerEntry.amount).filter(LedgerEntry.account == REFUNDS), 0
        )
        captured = func.coalesce(
            func.sum(LedgerEntry.amount).filter(LedgerTransaction.kind == "capture", gateway_side),
            0,
        )
        rows = await session.execute(
            select(Order, held, refunded, captured)
            .outerjoin(LedgerTransaction, LedgerTransaction.order_id == Order.order_id)
            .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(Order.gateway_payment_id.is_not(None))
            .group_by(Order.order_id)
        )
        in_flight = set(
            await session.scalars(
                select(Refund.order_id).where(Refund.status == RefundStatus.PENDING)
            )
        ) | set(
            await session.scalars(
                select(StrayCapture.order_id).where(StrayCapture.status == RefundStatus.PENDING)
            )
        )
        for order, held_amount, refunded_amount, captured_amount in rows:
            if order.order_id in in_flight or order.status == OrderStatus.ON_HOLD:
                continue  # a refund on its way, or support to decide: the books follow
            if refunded_amount > captured_amount:
                problems.append(
                    f"order {order.order_id}: refunded {refunded_amount} is more "
                    f"than captured {captured_amount}"
                )
            if refunded_amount != order.refunded_amount:
                problems.append(
                    f"order {order.order_id}: ledger refunds {refunded_amount}, "
                    f"order row says {order.refunded_amount}"
                )
            gateway = gateways.get(order.gateway)
            if gateway is None:
                problems.append(f"order {order.order_id}: unknown gateway {order.gateway}")
                continue
            payments = await payments_of_order(gateway, order.order_id, order.payment_attempts)
            at_gateway = sum(
                (p.amount if p.outcome == PaymentOutcome.SUCCEEDED else 0) - p.refunded_amount
                for _, p in payments
            )
            if held_amount != at_gateway:
                problems.append(
                    f"order {order.order_id}: ledger says the gateway holds "
                    f"{held_amount}, the gateway says {at_gateway}"
                )
    return problems
