"""Figure 1, throughput: paid checkouts per second, Kassa against the naive Temporal checkout.

Kassa: N purchases at concurrency C through the public API: POST /v1/checkouts, the buyer
pays on the sandbox gateway, the signed callback reaches the API, the workflow fulfils the
order; each is polled with GET /v1/orders/{id} until `fulfilled`. The naive baseline
(bench/baseline.py): the same N at the same C, each started, signalled paid and awaited, on
the same Temporal server. Then what each checkout cost in server round trips (its history).

    .venv/bin/python -m bench.throughput [--checkouts 200] [--concurrency 20] [--poll 0.2]

Prints one summary line (`throughput: kassa …/s, naive …/s, ratio …x (target >= 1.0x)`),
the per-checkout history counts of both, and the CPU seconds each process used in each run;
writes bench/results/throughput-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    Meter,
    bounded,
    cpu_line,
    gateway,
    history_counts,
    kassa_paid_checkout,
    naive_checkout,
    report,
    run,
    storefront,
    summary,
)
from bench.stack import Stack, running_stack

HISTORY_SAMPLE = 50  # workflows whose histories are read for the per-checkout counts


async def kassa_run(stack: Stack, n: int, concurrency: int, poll: float) -> dict:
    """N paid checkouts through the API at concurrency C: rate, latencies, CPU by process."""
    async with storefront(stack) as api, gateway(stack) as sandbox:
        await kassa_paid_checkout(api, sandbox, poll)  # warm-up: pools, imports, caches
        run = await timed(stack, lambda: kassa_paid_checkout(api, sandbox, poll), n, concurrency)
    done = run.pop("done")
    return {**run, "create_latency": summary([c["latency"] for c in done])}


async def naive_run(stack: Stack, n: int, concurrency: int) -> dict:
    client = stack.baseline_client
    await naive_checkout(client)  # warm-up
    run = await timed(stack, lambda: naive_checkout(client), n, concurrency)
    run.pop("done")
    return run


async def timed(stack: Stack, checkout, n: int, concurrency: int) -> dict:
    """N runs of `checkout` at concurrency C: the rate, the end-to-end latencies, the CPU by
    process, the workflow ids (and what each run returned, under `done`)."""
    meter = Meter(stack).start()
    started = time.perf_counter()
    done = await bounded([checkout] * n, concurrency)
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    return {
        "checkouts": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "per_second": n / elapsed,
        "total_latency": summary([c["total"] for c in done]),
        "cpu": cpu,
        "workflow_ids": [c["workflow_id"] for c in done],
        "done": done,
    }


def history_line(name: str, counts: dict) -> str:
    return f"{name} per checkout: " + ", ".join(f"{k} {v:g}" for k, v in counts.items())


async def measure(stack: Stack, checkouts: int = 200, concurrency: int = 20, poll: float = 0.2):
    kassa = await kassa_run(stack, checkouts, concurrency, poll)
    naive = await naive_run(stack, checkouts, concurrency)
    kassa["history"] = await history_counts(stack.client, kassa["workflow_ids"][:HISTORY_SAMPLE])
    naive["history"] = await history_counts(
        stack.baseline_client, naive["workflow_ids"][:HISTORY_SAMPLE]
    )
    ratio = kassa["per_second"] / naive["per_second"]
    workers = len(stack.of("worker"))
    return {
        "summary": (
            f"throughput: kassa {kassa['per_second']:.1f}/s, naive {naive['per_second']:.1f}/s, "
            f"ratio {ratio:.2f}x (target >= 1.0x, aim 1.5x) "
            f"[{checkouts} checkouts at concurrency {concurrency}, {workers} worker(s)]"
        ),
        "details": [
            f"kassa: {kassa['seconds']} s; POST /v1/checkouts p50 "
            f"{kassa['create_latency']['p50']:.3f} s p99 {kassa['create_latency']['p99']:.3f} s; "
            f"purchase end to end p50 {kassa['total_latency']['p50']:.3f} s "
            f"p99 {kassa['total_latency']['p99']:.3f} s (poll every {poll} s)",
            f"naive: {naive['seconds']} s; start to result p50 "
            f"{naive['total_latency']['p50']:.3f} s p99 {naive['total_latency']['p99']:.3f} s",
            history_line("kassa", kassa["history"]),
            history_line("naive", naive["history"]),
            "kassa run " + cpu_line(kassa["cpu"]),
            "naive run " + cpu_line(naive["cpu"]),
        ],
        "ratio": ratio,
        "kassa": kassa,
        "naive": naive,
        "poll_seconds": poll,
    }


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkouts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--poll", type=float, default=0.2, help="seconds between GET /v1/orders/{id}"
    )
    return parser


async def main() -> None:
    args = arguments("Figure 1: throughput, Kassa against the naive checkout").parse_args()
    async with running_stack() as stack:
        result = await measure(stack, args.checkouts, args.concurrency, args.poll)
        report("throughput", result, stack)


if __name__ == "__main__":
    run(main)
