"""Figure 5, scale-out: the throughput run (figure 1) with one Kassa worker process, then with
a second one started beside it, and the naive baseline once (its one worker process), all on
the same Temporal server in the same run.

    .venv/bin/python -m bench.scaleout [--checkouts 200] [--concurrency 20] [--poll 0.2]

Prints one summary line (1 worker …/s, 2 workers …/s, their ratio, the naive baseline) and
the CPU seconds by process of each run (so a saturated server or machine shows: this box has
2 cores, which the two workers, the API, the server and the load generator share); writes
bench/results/scaleout-<UTC time>.json.
"""

from __future__ import annotations

from bench.common import cpu_line, report, run
from bench.stack import Stack, running_stack
from bench.throughput import arguments, kassa_run, naive_run


async def measure(stack: Stack, checkouts: int = 200, concurrency: int = 20, poll: float = 0.2):
    while len(stack.of("worker")) > 1:
        await stack.stop_worker()
    if not stack.of("worker"):
        await stack.add_worker()
    one = await kassa_run(stack, checkouts, concurrency, poll)
    await stack.add_worker()
    two = await kassa_run(stack, checkouts, concurrency, poll)
    naive = await naive_run(stack, checkouts, concurrency)
    for each in (one, two, naive):
        each.pop("workflow_ids")
    scale = two["per_second"] / one["per_second"]
    return {
        "summary": (
            f"scale-out: kassa 1 worker {one['per_second']:.1f}/s, 2 workers "
            f"{two['per_second']:.1f}/s ({scale:.2f}x), naive {naive['per_second']:.1f}/s; "
            f"2 workers vs naive {two['per_second'] / naive['per_second']:.2f}x "
            f"[{checkouts} checkouts at concurrency {concurrency}]"
        ),
        "details": [
            "1 worker: " + cpu_line(one["cpu"]),
            "2 workers: " + cpu_line(two["cpu"]),
            "naive: " + cpu_line(naive["cpu"]),
        ],
        "scale": scale,
        "one_worker": one,
        "two_workers": two,
        "naive": naive,
    }


async def main() -> None:
    args = arguments("Figure 5: throughput with 1 and 2 worker processes").parse_args()
    async with running_stack(workers=1) as stack:
        result = await measure(stack, args.checkouts, args.concurrency, args.poll)
        report("scaleout", result, stack)


if __name__ == "__main__":
    run(main)
