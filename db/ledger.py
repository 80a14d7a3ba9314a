"""Writing and reading the ledger (the postings themselves are kassa/ledger.py). The database
enforces balance and append-only (see the initial migration); a posting's unique key makes a
retried write a no-op."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LedgerEntry, LedgerTransaction, Order, Refund, StrayCapture
from db.orders import had_gateway_payment
from kassa.ledger import REFUNDS, Posting
from kassa.statuses import RefundStatus


async def post(session: AsyncSession, posting: Posting) -> bool:
    """Write one posting inside the caller's transaction; False if its key was posted
    before (nothing is written then)."""
    txn_id = await session.scalar(
        insert(LedgerTransaction)
        .values(key=posting.key, order_id=posting.order_id, kind=posting.kind)
        .on_conflict_do_nothing(index_elements=[LedgerTransaction.key])
        .returning(LedgerTransaction.id)
    )
    if txn_id is None:
        return False
    await session.execute(
        insert(LedgerEntry),
        [
            {
                "transaction_id": txn_id,
                "account": account,
                "amount": amount,
                "currency": posting.currency,
            }
            for account, amount in posting.entries.items()
        ],
    )
    return True


async def of_order(
    session: AsyncSession, order_id: str, limit: int, after: int = 0
) -> tuple[list[tuple[LedgerTransaction, LedgerEntry]], bool]:
    """At most `limit` of the order's transactions with their entries, oldest first, from
    after the transaction `after` (an id, see `transaction_of`); and whether more follow."""
    page = (
        select(LedgerTransaction.id)
        .where(LedgerTransaction.order_id == order_id, LedgerTransaction.id > after)
        .order_by(LedgerTransaction.id)
        .limit(limit + 1)
    )
    ids = list(await session.scalars(page))
    rows = await session.execute(
        select(LedgerTransaction, LedgerEntry)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.id.in_(ids[:limit]))
        .order_by(LedgerTransaction.id, LedgerEntry.id)
    )
    return [(txn, entry) for txn, entry in rows], len(ids) > limit


async def transaction_of(session: AsyncSession, order_id: str, key: str) -> int | None:
    """The id of the order's transaction with this key (a page's cursor), or None."""
    return await session.scalar(
        select(LedgerTransaction.id).where(
            LedgerTransaction.order_id == order_id, LedgerTransaction.key == key
        )
    )


async def unbalanced(session: AsyncSession) -> list[tuple[int, str, int]]:
    """(transaction, currency, sum) of every transaction that does not sum to zero."""
    rows = await session.execute(
        select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount) != 0)
    )
    return [tuple(row) for row in rows]


async def books_per_order(session: AsyncSession) -> list[tuple[Order, int, int, int]]:
    """For every order that had a gateway payment: (order, what the ledger says the gateway
    holds for it, what it says was refunded, what it says was captured)."""
    gateway_side = LedgerEntry.account.like("gateway:%")
    held = func.coalesce(func.sum(LedgerEntry.amount).filter(gateway_side), 0)
    refunded = func.coalesce(func.sum(LedgerEntry.amount).filter(LedgerEntry.account == REFUNDS), 0)
    captured = func.coalesce(
        func.sum(LedgerEntry.amount).filter(LedgerTransaction.kind == "capture", gateway_side), 0
    )
    rows = await session.execute(
        select(Order, held, refunded, captured)
        .outerjoin(LedgerTransaction, LedgerTransaction.order_id == Order.order_id)
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(had_gateway_payment)
        .group_by(Order.order_id)
    )
    return [tuple(row) for row in rows]


async def orders_with_refunds_in_flight(session: AsyncSession) -> set[str]:
    """Orders whose books are about to change: a refund or a stray capture's refund pending."""
    pending = RefundStatus.PENDING
    refunds = await session.scalars(select(Refund.order_id).where(Refund.status == pending))
    strays = await session.scalars(
        select(StrayCapture.order_id).where(StrayCapture.status == pending)
    )
    return set(refunds) | set(strays)
