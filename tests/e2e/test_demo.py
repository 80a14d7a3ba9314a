"""`kassa demo` for real: tooling/demo.py drives a small mix of purchases through the API of
the whole stack (API, Temporal dev server, worker, PostgreSQL, sandbox gateway), and the
database must agree with what its summary reports."""

from __future__ import annotations

import io

from rich.console import Console
from sqlalchemy import select

from db.models import Order, Refund
from kassa.settings import DEV_STOREFRONT_KEY
from tooling import demo

SEED = 331  # eight purchases with every scenario among them


async def test_demo_ends_every_purchase_where_its_summary_says(stack, sessions):
    assert {p.scenario for p in demo.plan(8, SEED, 2)} == set(demo.SCENARIOS)
    out = io.StringIO()
    console = Console(file=out, width=120)
    report = await demo.run_demo(
        stack.api_url,
        DEV_STOREFRONT_KEY,
        checkouts=8,
        concurrency=4,
        seed=SEED,
        expire_after=2,  # the suite's shortest payment window: walked-away ones expire
        timeout=20,
        console=console,
    )
    demo.print_report(report, console)
    shown = out.getvalue()
    assert report.ok, shown
    assert "8 purchases in" in shown and "UNEXPECTED" not in shown

    by_id = {p.order_id: p for p in report.purchases}
    async with sessions() as session:
        orders = {
            o.order_id: o
            for o in await session.scalars(select(Order).where(Order.order_id.in_(by_id)))
        }
        refunds = list(await session.scalars(select(Refund).where(Refund.order_id.in_(by_id))))
    assert set(orders) == set(by_id)
    expected = {
        "paid": "fulfilled",
        "retried": "fulfilled",
        "declined": "failed",
        "cancelled": "cancelled",
        "walked away": "expired",
        "refunded": "refunded",
    }
    for order_id, p in by_id.items():
        order = orders[order_id]
        assert order.status == p.status == expected[p.scenario], (p, order.status)
        assert order.payment_attempts == p.payment_attempts
        if p.scenario == "retried":
            assert order.payment_attempts == 2
        if p.scenario == "declined":
            assert order.payment_attempts == stack.settings.max_payment_attempts
            assert order.reason_code == "declined"
        if p.scenario in ("paid", "retried", "refunded"):
            assert p.fulfilled_seconds is not None
    refunded = {p.order_id for p in report.purchases if p.scenario == "refunded"}
    assert {(r.order_id, r.status, r.amount) for r in refunds} == {
        (order_id, "succeeded", orders[order_id].amount) for order_id in refunded
    }
    # The table's last row counts them all.
    assert sum(p.as_expected for p in report.purchases) == 8
