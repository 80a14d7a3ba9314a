"""`kassa support stuck` and `kassa support show`, the real commands against the stack's
Temporal dev server and PostgreSQL: a held payment (NeedsAttention) and an order whose
checkout was terminated by hand (nothing moves it on) are both on support's list."""

from __future__ import annotations

import asyncio
import os
import sys

from kassa import search
from kassa.settings import DEV_SUPPORT_KEY
from tests.e2e.test_purchase import checkout_body, post_checkout, wait_for_status
from tests.support import buyer_acts, eventually


async def kassa_support(stack, *args: str) -> tuple[int, str]:
    """The real command, as support runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": stack.settings.database_url,
        "TEMPORAL_ADDRESS": stack.temporal.service_client.config.target_host,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tooling.cli",
        "support",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


def row_of(output: str, order_id: str) -> str:
    [row] = [line for line in output.splitlines() if f" {order_id} " in line]
    return row


async def test_support_lists_what_is_stuck_and_shows_an_order(stack):
    async with stack.http() as api:
        held = (await post_checkout(api, checkout_body())).json()
        await buyer_acts(held["payment"]["payment_url"], amount=100)  # 1.00 of 297.00
        await wait_for_status(api, held["order_id"], "on_hold")
        abandoned = (await post_checkout(api, checkout_body())).json()
    await stack.temporal.get_workflow_handle(abandoned["workflow_id"]).terminate("by hand")
    held_handle = stack.temporal.get_workflow_handle(held["workflow_id"])

    async def listed() -> bool:  # visibility catches up with the attribute a moment later
        query = f"NeedsAttention = 'held_payment' AND OrderId = '{held['order_id']}'"
        return bool([w async for w in stack.temporal.list_workflows(query)])

    await eventually(listed)
    assert (await held_handle.describe()).typed_search_attributes.get(
        search.NEEDS_ATTENTION
    ) == "held_payment"

    code, output = await kassa_support(stack, "stuck")

    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == [
        "SINCE",
        "NEEDS",
        "ORDER",
        "CUSTOMER",
        "AMOUNT",
        "STATUS",
        "WORKFLOW",
    ]
    held_row = row_of(output, held["order_id"])
    assert "held_payment" in held_row and "297.00 CNY" in held_row and "on_hold" in held_row
    assert f"{held['workflow_id']} (running)" in held_row
    abandoned_row = row_of(output, abandoned["order_id"])
    assert "checkout_not_running" in abandoned_row and "awaiting_payment" in abandoned_row
    assert f"{abandoned['workflow_id']} (terminated)" in abandoned_row
    # Oldest first: the held checkout started before the abandoned one.
    assert lines.index(held_row) < lines.index(abandoned_row)
    since = [line[:23] for line in lines[1:-1]]
    assert since == sorted(since)

    code, output = await kassa_support(stack, "show", held["order_id"])

    assert code == 0, output
    assert output.startswith(f"Order {held['order_id']}: on_hold (amount_mismatch)\n")
    assert "why: paid 1.00 CNY instead of 297.00 CNY" in output
    assert f"Checkout {held['workflow_id']}: running" in output
    assert "NeedsAttention=held_payment" in output and "Currency=CNY" in output
    assert "details: Held for support: paid 1.00 CNY instead of 297.00 CNY" in output
    assert "pending activities: none" in output
    assert "Refunds: none" in output
    assert "Audit: no support action" in output
    await held_handle.terminate("test finished")

    # A support action shows in the order's story: who, what, the status around it, why.
    async with stack.http(DEV_SUPPORT_KEY) as support:
        started = await support.post(
            f"/v1/orders/{abandoned['order_id']}/reconcile", json={"reason": "left by hand"}
        )
        await stack.temporal.get_workflow_handle(started.json()["workflow_id"]).result()
    code, output = await kassa_support(stack, "show", abandoned["order_id"])
    assert code == 0, output
    assert f"Order {abandoned['order_id']}: expired" in output
    assert "support:dev-support reconcile (awaiting_payment → awaiting_payment): left by hand" in (
        output
    )

    code, output = await kassa_support(stack, "show", "no-such-order")
    assert code == 1 and "no order no-such-order" in output
