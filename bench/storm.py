"""Figure 4, expiry storm: N checkouts whose payment windows all close within the same minute.

A target minute [T, T+60 s) is chosen far enough ahead that opening them all finishes first
(--lead seconds; by default 30 s + N/5 s: this machine opened 5-10/s); each checkout is
opened with the expires_in_seconds that puts its window's end at its place in that minute
(spread evenly). No buyer pays. The orders table is then watched (every 0.5 s) until all are
`expired` (at most 15 min after the minute; what is left is reported); each one's lag is the
time it was first seen expired minus its window's end (orders.expires_at). The sandbox counts
the close calls it received and what they did (GET /_emulator/calls), and its state tells
whether each payment was closed once.

    .venv/bin/python -m bench.storm [--checkouts 2000] [--concurrency 20] [--lead SECONDS]

KASSA_EXPIRES_IN_MIN is lowered to 5 s by the bench stack, so the windows can be placed at
will. Kassa's own status-check settings apply (one early check per checkout; set
KASSA_STATUS_CHECK_FIRST_SECONDS / _MAX_SECONDS in the environment to try others). Before
the checks were cut to one, this machine's one worker saturated at about 1,400 open
checkouts while opening 2,000 (every open checkout asked the gateway from 15 s on, backing
off to 300 s). Checkouts that cannot be opened (a 503 three times retried) are counted and
left out.

Prints one summary line (all expired within … s of their expiry; close calls and
successful closes against the checkouts; target: all within 120 s, exactly one successful
close each) and writes bench/results/storm-<UTC time>.json. The gateway payment expires with
the window, so a close arriving after it finds the payment `expired` at the sandbox: that
answers 200 and counts as a successful close ("close: was expired"), as a real gateway's
close of an expired order does.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter

import asyncpg
import httpx

from bench.common import (
    Meter,
    cpu_line,
    open_many,
    report,
    run,
    storefront,
    summary,
    watch_orders,
)
from bench.stack import Stack, running_stack

CLOSE = "POST /v1/payments/by-order/{merchant_order_id}/close"
OK_CLOSES = ("close: closed a pending payment", "close: was expired", "close: was closed")


async def sandbox_calls(stack: Stack) -> dict:
    async with httpx.AsyncClient(base_url=stack.sandbox_url, timeout=60) as http:
        return (await http.get("/_emulator/calls")).json()


def delta(after: dict, before: dict) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in sorted(keys)
        if after.get(k, 0) - before.get(k, 0)
    }


async def measure(
    stack: Stack,
    checkouts: int = 2000,
    concurrency: int = 20,
    lead: float | None = None,
    whole_minute: bool = True,
    spread: float = 60,
    wait_after: float = 900,
) -> dict:
    lead = 30 + checkouts / 5 if lead is None else lead
    target = time.time() + lead
    if whole_minute:  # the start of a whole minute, as a storm at :00 would be
        target = math.ceil(target / 60) * 60
    before = await sandbox_calls(stack)
    late = 0

    def window(i: int) -> int:
        nonlocal late
        expires_in = math.ceil(target + spread * i / checkouts - time.time())
        if expires_in < 5:
            late += 1
        return max(5, expires_in)

    async with storefront(stack) as api:
        opened, errors, opened_in = await open_many(api, checkouts, concurrency, window)
    retried = sum(c["retried"] for c in opened)
    order_ids = [c["order_id"] for c in opened]
    wait = target - time.time()
    meter = None
    if wait > 5:
        await asyncio.sleep(wait - 5)
    meter = Meter(stack).start()
    seen = await watch_orders(
        stack.database_url,
        order_ids,
        {"expired"},
        timeout=max(0, target - time.time()) + spread + wait_after,
        partial=True,
    )
    unexpired = [o for o in order_ids if o not in seen]
    cpu = meter.stop()
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT order_id, expires_at FROM orders WHERE order_id = ANY($1)", order_ids
        )
    finally:
        await conn.close()
    expires = {r["order_id"]: r["expires_at"].timestamp() for r in rows}
    lags = [seen[o] - expires[o] for o in order_ids if o in seen]
    after = await sandbox_calls(stack)
    calls, outcomes = (
        delta(after["calls"], before["calls"]),
        delta(after["outcomes"], before["outcomes"]),
    )
    closes = calls.get(CLOSE, 0)
    ok = sum(outcomes.get(k, 0) for k in OK_CLOSES)
    async with httpx.AsyncClient(base_url=stack.sandbox_url, timeout=60) as http:
        payments = (await http.get("/_emulator/state")).json()["payments"]
    mine = set(order_ids)
    gateway_status = Counter(
        p["status"] for p in payments.values() if p["merchant_order_id"] in mine
    )
    last_expiry = max(expires.values())
    all_expired_at = max(seen.values()) if seen else float("nan")
    lag = summary(lags)
    return {
        "summary": (
            f"storm: {len(opened)} checkouts expiring within {spread:.0f} s, "
            f"{'all expired' if not unexpired else f'{len(unexpired)} NOT expired'}; "
            f"lag after expiry p50 {lag['p50']:.1f} s p99 {lag['p99']:.1f} s "
            f"max {lag['max']:.1f} s (target <= 120 s); close calls {closes}, successful "
            f"closes {ok} for {len(opened)} checkouts (target exactly one each)"
        ),
        "details": [
            f"opened {len(opened)} ({len(errors)} failed) in {opened_in:.0f} s "
            f"({len(opened) / opened_in:.1f}/s at concurrency {concurrency}, {retried} retried "
            f"after a 503); {late} opened too late for "
            f"their place in the minute (window clamped to 5 s)",
            f"windows closed from {min(expires.values()) - target:+.1f} s to "
            f"{last_expiry - target:+.1f} s around the target minute's start; the last order "
            f"was expired {all_expired_at - last_expiry:.1f} s after the last window closed",
            f"sandbox calls during the storm: {calls}",
            f"close outcomes: {outcomes}; gateway payment statuses: {dict(gateway_status)}",
            cpu_line(cpu),
        ],
        "checkouts": checkouts,
        "concurrency": concurrency,
        "opened_seconds": opened_in,
        "late": late,
        "retried": retried,
        "failed_to_open": errors,
        "lag": lag,
        "not_expired": len(unexpired),
        "last_expired_after_last_window": all_expired_at - last_expiry,
        "close_calls": closes,
        "successful_closes": ok,
        "sandbox_calls": calls,
        "close_outcomes": outcomes,
        "gateway_statuses": dict(gateway_status),
        "cpu": cpu,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 4: an expiry storm")
    parser.add_argument("--checkouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--lead", type=float, default=None, help="seconds to the target minute")
    args = parser.parse_args()
    async with running_stack() as stack:
        result = await measure(stack, args.checkouts, args.concurrency, args.lead)
        report("storm", result, stack)


if __name__ == "__main__":
    run(main)
