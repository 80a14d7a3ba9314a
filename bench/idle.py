"""Figure 3, idle cost: what N open checkouts cost while their buyers hesitate.

1. Before any checkout: the CPU every process uses over --before seconds (the workers long-
   poll; the Temporal server does its own housekeeping). The server's figure here is the
   base that "caused by Kassa" is measured against.
2. N checkouts opened through the API (concurrency C) with a long payment window
   (--expires-in, 2 h by default), and nobody pays.
3. A wait for them to settle: until the in-workflow early status check
   (KASSA_STATUS_CHECK_FIRST_SECONDS, read from the environment or Kassa's default) has run
   for the last one opened, plus --settle seconds.
4. --idle seconds measured: CPU seconds (user + system, children included) and resident
   memory (peak of samples every 5 s) of the worker(s), the API and the Temporal server
   (and the rest, for the record). The server's idle CPU caused by Kassa = its % of one core
   in 4 minus its % in 1.
5. A lost callback: the sandbox is set to drop every callback, one more checkout is opened
   (window --lost-window seconds) and paid, the faults are reset, and the time until its
   order is `paid` is printed against its window.

The reconcile schedule (kassa-reconcile) runs once a day at 00:00 UTC on the bench stack
(KASSA_RECONCILE_EVERY_MINUTES=1440); its run count is read before and after the idle window
and printed, so a run in the window would show.

    .venv/bin/python -m bench.idle [--checkouts 10000] [--concurrency 20] [--idle 60]
        [--before 60] [--settle 30] [--expires-in 7200] [--lost-window 300]

Opening 10,000 takes about 15 minutes on this machine (2 cores): the run is sized by
--checkouts. (When every open checkout still asked the gateway from 15 s on, backing off to
300 s, opening 2,000 slowed from 7/s to under 2/s past 1,000 open: the worker saturated.)

Prints one summary line (worker RSS, idle CPU of worker + API, server CPU caused by Kassa,
against the targets: RSS <= 300 MB, worker + API <= 2% of a core, server <= 5%, lost callback
caught within the window) and writes bench/results/idle-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import (
    Meter,
    gateway,
    open_checkout,
    open_many,
    pay,
    report,
    rss_bytes,
    run,
    storefront,
    watch_orders,
)
from bench.stack import Stack, running_stack
from kassa.settings import Settings
from orchestration.temporal import RECONCILE_SCHEDULE


async def reconcile_runs(stack: Stack) -> int:
    described = await stack.client.get_schedule_handle(RECONCILE_SCHEDULE).describe()
    return described.info.num_actions


def first_check_seconds(stack: Stack) -> int:
    value = stack.env.get("KASSA_STATUS_CHECK_FIRST_SECONDS")
    return int(value) if value else Settings().status_check_first_seconds


async def lost_callback(stack: Stack, window: int) -> dict:
    """A paid checkout whose callback the gateway drops: how long until Kassa knows."""
    async with storefront(stack) as api, gateway(stack) as sandbox:
        faults = {"faults": {"drop_callbacks": 1.0}}
        (await sandbox.put("/_emulator/behaviour", json=faults)).raise_for_status()
        try:
            checkout = await open_checkout(api, window)
            await pay(sandbox, checkout)
            paid_at = time.time()
            injected = (await sandbox.get("/_emulator/faults")).json()["injected"]
        finally:
            (await sandbox.put("/_emulator/behaviour", json={})).raise_for_status()
        seen = await watch_orders(
            stack.database_url, [checkout["order_id"]], {"paid", "fulfilled"}, window + 300
        )
    caught = seen[checkout["order_id"]] - paid_at
    return {
        "window_seconds": window,
        "opened_to_paid_seconds": paid_at - checkout["opened_at"],
        "caught_after_seconds": caught,
        "within_window": caught + (paid_at - checkout["opened_at"]) <= window,
        "dropped_callbacks": injected.get("dropped_callbacks", 0),
    }


def pct(usage: dict, *roles: str) -> float:
    return sum(usage[r]["core_percent"] for r in roles if r in usage)


async def measure(
    stack: Stack,
    checkouts: int = 10_000,
    concurrency: int = 20,
    idle: float = 60,
    before: float = 60,
    settle: float = 30,
    expires_in: int = 7200,
    lost_window: int = 300,
) -> dict:
    meter = Meter(stack).start()
    await asyncio.sleep(before)
    quiet = meter.stop()

    async with storefront(stack) as api:
        opened, errors, opened_in = await open_many(
            api, checkouts, concurrency, lambda i: expires_in
        )
    retried = sum(c["retried"] for c in opened)
    settle_for = first_check_seconds(stack) + settle
    await asyncio.sleep(settle_for)

    runs_before = await reconcile_runs(stack)
    meter = Meter(stack).start()
    peak: dict[str, int] = {}
    deadline = time.monotonic() + idle
    while True:
        for role, processes in meter.roles.items():
            alone = role == "bench driver"  # its children are the stack
            rss = sum(rss_bytes(p, children=not alone) for p in processes)
            peak[role] = max(peak.get(role, 0), rss)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(5, max(0, deadline - time.monotonic())))
    usage = meter.stop()
    runs_after = await reconcile_runs(stack)
    for role, value in peak.items():
        usage[role]["peak_rss_mb"] = round(value / 2**20, 1)

    lost = await lost_callback(stack, lost_window)
    worker_rss = usage["worker"]["peak_rss_mb"]
    worker_api = pct(usage, "worker", "api")
    server_by_kassa = pct(usage, "temporal") - pct(quiet, "temporal")
    roles = [r for r in usage if not r.startswith("_")]
    return {
        "summary": (
            f"idle: {len(opened)} open checkouts: worker RSS {worker_rss:.0f} MB (target <= 300), "
            f"worker + API CPU {worker_api:.1f}% of a core (target <= 2%), Temporal server "
            f"CPU caused by Kassa {server_by_kassa:.1f}% (target <= 5%); lost callback caught "
            f"after {lost['caught_after_seconds']:.1f} s, window {lost_window} s"
            f" ({'within' if lost['within_window'] else 'NOT within'})"
        ),
        "details": [
            f"opened {len(opened)} in {opened_in:.0f} s ({len(opened) / opened_in:.1f}/s, "
            f"{retried} retried after a 503, {len(errors)} failed), "
            f"then waited {settle_for:.0f} s to settle",
            f"before any checkout ({quiet['_elapsed_seconds']:.0f} s): "
            + ", ".join(f"{r} {quiet[r]['core_percent']:.1f}%" for r in roles if r in quiet),
            f"idle ({usage['_elapsed_seconds']:.0f} s), % of one core / peak RSS: "
            + ", ".join(
                f"{r} {usage[r]['core_percent']:.1f}% / {usage[r]['peak_rss_mb']:.0f} MB"
                for r in roles
            ),
            f"reconcile schedule runs during the idle window: {runs_after - runs_before} "
            f"(KASSA_RECONCILE_EVERY_MINUTES={stack.env.get('KASSA_RECONCILE_EVERY_MINUTES')})",
            f"lost callback: dropped {lost['dropped_callbacks']}, paid "
            f"{lost['opened_to_paid_seconds']:.1f} s after opening, order paid "
            f"{lost['caught_after_seconds']:.1f} s after the buyer paid (window {lost_window} s, "
            f"first status check at {first_check_seconds(stack)} s)",
        ],
        "checkouts": checkouts,
        "opened_seconds": opened_in,
        "retried": retried,
        "opened": len(opened),
        "failed_to_open": errors,
        "settle_seconds": settle_for,
        "before": quiet,
        "idle": usage,
        "worker_peak_rss_mb": worker_rss,
        "worker_api_core_percent": worker_api,
        "server_caused_by_kassa_core_percent": server_by_kassa,
        "reconcile_runs_in_window": runs_after - runs_before,
        "lost_callback": lost,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 3: the idle cost of open checkouts")
    parser.add_argument("--checkouts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60, help="seconds measured idle")
    parser.add_argument("--before", type=float, default=60, help="seconds measured before")
    parser.add_argument("--settle", type=float, default=30, help="after the first check")
    parser.add_argument("--expires-in", type=int, default=7200)
    parser.add_argument("--lost-window", type=int, default=300)
    args = parser.parse_args()
    async with running_stack() as stack:
        result = await measure(
            stack,
            args.checkouts,
            args.concurrency,
            args.idle,
            args.before,
            args.settle,
            args.expires_in,
            args.lost_window,
        )
        report("idle", result, stack)


if __name__ == "__main__":
    run(main)
