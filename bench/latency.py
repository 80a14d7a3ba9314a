"""Figure 2, checkout latency: how long POST /v1/checkouts takes until the payment URL is
back, at concurrency 1 and 20, against bare update-with-start of a workflow whose update runs
one activity (bench/baseline.py), on the same Temporal server.

    .venv/bin/python -m bench.latency [--checkouts 100] [--concurrency 1 20]

Each concurrency runs Kassa then the baseline, N requests each. The checkouts Kassa opened
are then paid (untimed) and awaited until fulfilled, so open checkouts do not pile up into
the next measurement. Prints one summary line with p50 and p99 of both and their ratios
(target: p50 <= 1.5x the baseline), and writes bench/results/latency-<UTC time>.json.
"""

from __future__ import annotations

import argparse

from bench.common import (
    Meter,
    bare_open,
    bounded,
    cpu_line,
    gateway,
    open_checkout,
    pay,
    report,
    run,
    storefront,
    summary,
    watch_orders,
)
from bench.stack import Stack, running_stack


async def at_concurrency(stack: Stack, n: int, concurrency: int) -> dict:
    async with storefront(stack) as api, gateway(stack) as sandbox:
        warm = await open_checkout(api)
        await bare_open(stack.baseline_client)
        meter = Meter(stack).start()
        opened = await bounded([lambda: open_checkout(api)] * n, concurrency)
        kassa_cpu = meter.stop()
        meter = Meter(stack).start()
        bare = await bounded([lambda: bare_open(stack.baseline_client)] * n, concurrency)
        bare_cpu = meter.stop()
        # Untimed: pay what was opened and wait until it is fulfilled.
        await bounded([lambda c=c: pay(sandbox, c) for c in [warm, *opened]], 20)
        await watch_orders(
            stack.database_url,
            [c["order_id"] for c in [warm, *opened]],
            {"fulfilled"},
            timeout=300,
        )
    kassa = summary([c["latency"] for c in opened])
    baseline = summary(bare)
    return {
        "concurrency": concurrency,
        "checkouts": n,
        "kassa": kassa,
        "baseline": baseline,
        "p50_ratio": kassa["p50"] / baseline["p50"],
        "p99_ratio": kassa["p99"] / baseline["p99"],
        "kassa_cpu": kassa_cpu,
        "baseline_cpu": bare_cpu,
    }


async def measure(stack: Stack, checkouts: int = 100, concurrencies: tuple[int, ...] = (1, 20)):
    runs = [await at_concurrency(stack, checkouts, c) for c in concurrencies]
    parts = [
        f"c={r['concurrency']}: kassa p50 {r['kassa']['p50'] * 1000:.0f} ms "
        f"p99 {r['kassa']['p99'] * 1000:.0f} ms, update-with-start p50 "
        f"{r['baseline']['p50'] * 1000:.0f} ms p99 {r['baseline']['p99'] * 1000:.0f} ms, "
        f"p50 ratio {r['p50_ratio']:.2f}x"
        for r in runs
    ]
    return {
        "summary": "latency: " + "; ".join(parts) + " (target p50 ratio <= 1.5x)",
        "details": [
            f"c={r['concurrency']}: {r['checkouts']} each; kassa mean "
            f"{r['kassa']['mean'] * 1000:.0f} ms max {r['kassa']['max'] * 1000:.0f} ms; "
            f"baseline mean {r['baseline']['mean'] * 1000:.0f} ms max "
            f"{r['baseline']['max'] * 1000:.0f} ms; p99 ratio {r['p99_ratio']:.2f}x"
            for r in runs
        ]
        + [f"c={r['concurrency']} kassa " + cpu_line(r["kassa_cpu"]) for r in runs]
        + [f"c={r['concurrency']} baseline " + cpu_line(r["baseline_cpu"]) for r in runs],
        "runs": runs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 2: checkout latency")
    parser.add_argument("--checkouts", type=int, default=100, help="per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    args = parser.parse_args()
    async with running_stack() as stack:
        result = await measure(stack, args.checkouts, tuple(args.concurrency))
        report("latency", result, stack)


if __name__ == "__main__":
    run(main)
