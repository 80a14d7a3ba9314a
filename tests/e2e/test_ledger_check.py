"""`kassa ledger check` finds what is wrong, and the database refuses unbalanced or edited
ledger rows outright."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db import ledger
from db.models import LedgerTransaction
from kassa.ledger import Posting
from tests.e2e.test_purchase import checkout_body, post_checkout
from tests.e2e.test_refunds import bought


async def run_check(settings) -> tuple[int, str]:
    """The real command, as an operator runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KASSA_SANDBOX_URL": settings.sandbox_url,
        "KASSA_ALIPAY_GATEWAY_URL": settings.alipay_gateway_url,
        "KASSA_ALIPAY_KEYS_DIR": str(settings.alipay_keys_dir),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tooling.cli",
        "ledger",
        "check",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def test_an_unbalanced_transaction_cannot_commit(stack, sessions):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
    with pytest.raises(DBAPIError, match="does not balance"):
        async with sessions.begin() as session:
            await ledger.post(
                session,
                Posting(
                    f"bogus:{order_id}",
                    order_id,
                    "capture",
                    "CNY",
                    {"gateway:sandbox": 100, "revenue": -99},
                ),
            )
    with pytest.raises(DBAPIError, match="fewer than two entries"):
        async with sessions.begin() as session:
            session.add(
                LedgerTransaction(key=f"empty:{order_id}", order_id=order_id, kind="capture")
            )


async def test_the_ledger_is_append_only(stack, sessions):
    async with stack.http() as api:
        order = await bought(api)  # its capture is in the ledger
    for statement in (
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_transactions",
        "TRUNCATE ledger_entries, ledger_transactions",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessions.begin() as session:
                await session.execute(text(statement))
    async with sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE order_id = :o"),
            {"o": order["order_id"]},
        )
    assert count == 1


async def test_the_check_reports_books_that_disagree_with_the_gateway(stack, sessions, settings):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
    # A capture booked for an order the buyer never paid: balanced, but untrue.
    async with sessions.begin() as session:
        await ledger.post(
            session,
            Posting(
                f"mistake:{order_id}",
                order_id,
                "capture",
                "CNY",
                {"gateway:sandbox": 500, "revenue": -500},
            ),
        )

    code, output = await run_check(settings)
    assert code == 1
    assert (
        f"VIOLATION order {order_id}: ledger says the gateway holds 500, the gateway says 0"
    ) in output

    # Corrections are new transactions, never edits; then the books are right again.
    async with sessions.begin() as session:
        await ledger.post(
            session,
            Posting(
                f"reversal:{order_id}",
                order_id,
                "correction",
                "CNY",
                {"gateway:sandbox": -500, "revenue": 500},
            ),
        )
    code, output = await run_check(settings)
    assert code == 0, output
    assert "ledger check: 0 violation(s)" in output
