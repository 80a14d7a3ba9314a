"""The benchmarks (bench/) at a tiny size on one stack of their own, so they cannot rot: each
figure runs and its numbers are sane (every checkout fulfilled or expired, closes counted,
the lost callback caught). Nothing about speed is asserted: that is what the figures print.

    .venv/bin/pytest -s tests/e2e/test_bench.py
"""

from __future__ import annotations

from bench import idle, latency, scaleout, storm, throughput
from bench.common import report
from bench.stack import running_stack


async def test_every_figure_runs_at_a_tiny_size():
    # The early status check after 3 s: the lost callback is caught without a long wait.
    async with running_stack(env={"KASSA_STATUS_CHECK_FIRST_SECONDS": "3"}) as stack:
        result = await throughput.measure(stack, checkouts=4, concurrency=2, poll=0.1)
        report("throughput", result, stack, write=False)
        for run in (result["kassa"], result["naive"]):
            assert run["checkouts"] == 4 and run["per_second"] > 0
        assert result["kassa"]["history"]["workflow tasks"] > 0
        assert result["naive"]["history"]["activity tasks"] == 5
        assert result["kassa"]["cpu"]["worker"]["cpu_seconds"] > 0

        result = await latency.measure(stack, checkouts=4, concurrencies=(1, 2))
        report("latency", result, stack, write=False)
        for run in result["runs"]:
            assert run["kassa"]["n"] == run["baseline"]["n"] == 4
            assert 0 < run["kassa"]["p50"] <= run["kassa"]["p99"]

        result = await storm.measure(stack, checkouts=10, lead=8, whole_minute=False, spread=5)
        report("storm", result, stack, write=False)
        assert result["lag"]["n"] == 10  # every one expired (or measure raises)
        assert result["close_calls"] >= 10
        assert result["successful_closes"] == 10
        assert sum(result["gateway_statuses"].values()) == 10
        assert set(result["gateway_statuses"]) <= {"closed", "expired"}

        result = await idle.measure(
            stack, checkouts=20, before=2, idle=3, settle=1, expires_in=600, lost_window=60
        )
        report("idle", result, stack, write=False)
        assert result["checkouts"] == 20
        assert result["idle"]["worker"]["peak_rss_mb"] > 0
        assert result["idle"]["temporal"]["processes"] == 1
        assert result["reconcile_runs_in_window"] == 0
        lost = result["lost_callback"]
        assert lost["dropped_callbacks"] == 1 and lost["within_window"]

        result = await scaleout.measure(stack, checkouts=4, concurrency=2, poll=0.1)
        report("scaleout", result, stack, write=False)
        assert len(stack.of("worker")) == 2
        for run in ("one_worker", "two_workers", "naive"):
            assert result[run]["checkouts"] == 4 and result[run]["per_second"] > 0
