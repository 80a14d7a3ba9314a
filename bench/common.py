"""What the figures share: driving checkouts (Kassa through its public API, the baselines
through Temporal), watching orders in the database, measuring processes, and writing the
results file."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean

import asyncpg
import httpx
import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.baseline import TASK_QUEUE, BareOpen, NaiveCheckout
from bench.stack import Stack
from tooling.demo import percentile

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

COUNTED = {
    "workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "activity tasks": EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    "markers (local activities, patches)": EventType.EVENT_TYPE_MARKER_RECORDED,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "signals": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    "updates": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
}


def run(main: Callable[[], Coroutine]) -> None:
    """asyncio.run(main()), but SIGTERM cancels it like Ctrl-C does, so the stack's
    processes are stopped and its folder removed either way."""

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await main()

    asyncio.run(guarded())


# ---- numbers ---------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": mean(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


async def bounded(jobs: Iterable[Callable[[], Awaitable]], concurrency: int) -> list:
    """Run the jobs, at most `concurrency` at a time; their results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job):
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


# ---- Kassa through its public API ------------------------------------------------------


def storefront(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url,
        timeout=120,
        headers={"Authorization": f"Bearer {stack.storefront_key}"},
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


def gateway(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.sandbox_url,
        timeout=120,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


def checkout_body(expires_in_seconds: int | None = None) -> dict:
    body = {
        "customer_id": f"bench_{uuid.uuid4().hex[:12]}",
        "items": [{"sku": "course-1", "title": "Course", "unit_amount": 9900, "quantity": 1}],
        "currency": "CNY",
        "gateway": "sandbox",
    }
    if expires_in_seconds is not None:
        body["expires_in_seconds"] = expires_in_seconds
    return body


async def open_checkout(
    api: httpx.AsyncClient, expires_in_seconds: int | None = None, retries: int = 0
) -> dict:
    """POST /v1/checkouts until the payment URL is back; the checkout, with `latency` (of the
    last attempt) and `retried`. A 5xx or a broken connection is retried `retries` times with
    the same idempotency key and body (as a storefront would)."""
    body, key = checkout_body(expires_in_seconds), uuid.uuid4().hex
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            created = await api.post("/v1/checkouts", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            if attempt == retries:
                raise
            continue
        latency = time.perf_counter() - started
        if created.status_code < 300:
            return {
                **created.json(),
                "latency": latency,
                "opened_at": time.time(),
                "retried": attempt,
            }
        if created.status_code < 500 or attempt == retries:
            raise RuntimeError(f"POST /v1/checkouts: {created.status_code} {created.text[:500]}")
    raise AssertionError("unreachable")


async def open_many(
    api: httpx.AsyncClient,
    count: int,
    concurrency: int,
    expires_in: Callable[[int], int | None],
    progress: bool = True,
) -> tuple[list[dict], list[str], float]:
    """Open `count` checkouts (the i-th with the window `expires_in(i)`), retrying a 503 with
    the same key as the API asks (3 times); printing progress every tenth. The checkouts
    opened, the errors of those that could not be, and the seconds it took."""
    done, started = 0, time.time()
    errors: list[str] = []

    async def one(i: int) -> dict | None:
        nonlocal done
        try:
            checkout = await open_checkout(api, expires_in(i), retries=3)
        except (RuntimeError, httpx.HTTPError) as exc:
            errors.append(str(exc)[:300])
            return None
        done += 1
        if progress and done % max(1, count // 10) == 0:
            print(f"  opened {done}/{count} in {time.time() - started:.0f} s", flush=True)
        return checkout

    opened = await bounded([lambda i=i: one(i) for i in range(count)], concurrency)
    return [c for c in opened if c is not None], errors, time.time() - started


async def pay(sandbox: httpx.AsyncClient, checkout: dict) -> None:
    """The buyer pays on the sandbox (its emulator control, as tests/support.py's buyer)."""
    paid = await sandbox.post(
        "/_emulator/buyer",
        json={"payment": checkout["payment"]["payment_url"], "outcome": "succeeded"},
    )
    paid.raise_for_status()


async def wait_status(
    api: httpx.AsyncClient, order_id: str, statuses: set[str], timeout: float, poll: float
) -> str:
    """Poll GET /v1/orders/{id} (as a storefront would) until its status is one of these."""
    deadline = time.monotonic() + timeout
    await asyncio.sleep(poll)
    while True:
        order = await api.get(f"/v1/orders/{order_id}")
        order.raise_for_status()
        status = order.json()["status"]
        if status in statuses:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"order {order_id} still {status} after {timeout} s")
        await asyncio.sleep(poll)


async def kassa_paid_checkout(
    api: httpx.AsyncClient, sandbox: httpx.AsyncClient, poll: float
) -> dict:
    """One purchase end to end: created, paid on the sandbox, polled until fulfilled."""
    started = time.perf_counter()
    checkout = await open_checkout(api)
    await pay(sandbox, checkout)
    await wait_status(api, checkout["order_id"], {"fulfilled"}, timeout=300, poll=poll)
    return {**checkout, "total": time.perf_counter() - started}


# ---- the baselines through Temporal ----------------------------------------------------


async def naive_checkout(client: Client) -> dict:
    """The naive checkout: start, signal paid, wait for its result."""
    started = time.perf_counter()
    order_id = f"naive_{uuid.uuid4().hex[:12]}"
    handle = await client.start_workflow(
        NaiveCheckout.run, order_id, id=order_id, task_queue=TASK_QUEUE
    )
    await handle.signal(NaiveCheckout.pay)
    assert await handle.result() == "fulfilled"
    return {"workflow_id": order_id, "total": time.perf_counter() - started}


async def bare_open(client: Client) -> float:
    """Update-with-start of a workflow whose update runs one activity: its latency."""
    started = time.perf_counter()
    order_id = f"bare_{uuid.uuid4().hex[:12]}"
    start = WithStartWorkflowOperation(
        BareOpen.run,
        order_id,
        id=order_id,
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    url = await client.execute_update_with_start_workflow(
        BareOpen.open, order_id, start_workflow_operation=start
    )
    assert url.endswith(order_id)
    return time.perf_counter() - started


async def history_counts(client: Client, workflow_ids: list[str]) -> dict[str, float]:
    """Per workflow, on average: what costs a server round trip, and the history's length."""
    counts: list[Counter] = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        kinds = Counter(event.event_type for event in history.events)
        counts.append(
            Counter({name: kinds[t] for name, t in COUNTED.items()})
            + Counter({"history events": len(history.events)})
        )
    names = [*COUNTED, "history events"]
    return {name: round(mean(c[name] for c in counts), 2) for name in names}


# ---- orders in the database ------------------------------------------------------------


async def watch_orders(
    database_url: str,
    order_ids: list[str],
    statuses: set[str],
    timeout: float,
    interval: float = 0.5,
    partial: bool = False,
) -> dict[str, float]:
    """Poll the orders table until every order has one of `statuses`; when each was first
    seen so (epoch seconds). After `timeout`: raises with how many are missing, or (partial)
    returns those seen."""
    seen: dict[str, float] = {}
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while len(seen) < len(order_ids):
            rows = await conn.fetch(
                "SELECT order_id FROM orders WHERE order_id = ANY($1) AND status::text = ANY($2)",
                [o for o in order_ids if o not in seen],
                sorted(statuses),
            )
            now = time.time()
            for row in rows:
                seen.setdefault(row["order_id"], now)
            if len(seen) == len(order_ids):
                break
            if time.monotonic() > deadline:
                if partial:
                    break
                missing = len(order_ids) - len(seen)
                raise RuntimeError(f"{missing} of {len(order_ids)} orders not {statuses}")
            await asyncio.sleep(interval)
    finally:
        await conn.close()
    return seen


async def order_statuses(database_url: str, order_ids: list[str]) -> Counter:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status::text AS status FROM orders WHERE order_id = ANY($1)", order_ids
        )
    finally:
        await conn.close()
    return Counter(row["status"] for row in rows)


# ---- processes -------------------------------------------------------------------------


def cpu_seconds(process: psutil.Process, children: bool = True) -> float:
    """User + system CPU seconds of a process and (unless not) its live children. The bench
    driver is measured alone: every process of the stack is its child."""
    total = 0.0
    for p in [process, *(_children(process) if children else [])]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_bytes(process: psutil.Process, children: bool = True) -> int:
    total = 0
    for p in [process, *(_children(process) if children else [])]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@dataclass
class Meter:
    """CPU seconds and resident memory by role over a stretch of time."""

    stack: Stack
    started: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    roles: dict[str, list[psutil.Process]] = field(default_factory=dict)

    def start(self) -> Meter:
        self.roles = self.stack.processes()
        self.before = self._cpu()
        self.started = time.monotonic()
        return self

    def _cpu(self) -> dict[str, float]:
        if "postgres" in self.roles:  # backends come and go: look again
            self.roles["postgres"] = self.stack.postgres_processes()
        return {
            role: sum(cpu_seconds(p, children=role != "bench driver") for p in ps)
            for role, ps in self.roles.items()
        }

    def stop(self) -> dict[str, dict]:
        """By role: CPU seconds used, % of one core, RSS now (MB)."""
        elapsed = time.monotonic() - self.started
        after = self._cpu()
        out = {}
        for role, ps in self.roles.items():
            used = after[role] - self.before.get(role, 0.0)
            out[role] = {
                "cpu_seconds": round(used, 2),
                "core_percent": round(100 * used / elapsed, 2) if elapsed else 0.0,
                "rss_mb": round(sum(rss_bytes(p, role != "bench driver") for p in ps) / 2**20, 1),
                "processes": len(ps),
            }
        out["_elapsed_seconds"] = round(elapsed, 2)  # type: ignore[assignment]
        return out


def cpu_line(usage: dict) -> str:
    parts = [
        f"{role} {u['cpu_seconds']:.1f}s"
        for role, u in usage.items()
        if not role.startswith("_") and isinstance(u, dict)
    ]
    return f"CPU over {usage['_elapsed_seconds']:.0f} s: " + ", ".join(parts)


# ---- the results file ------------------------------------------------------------------


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": os.getloadavg(),
    }


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = " (dirty)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "HEAD") + dirty


def report(figure: str, result: dict, stack: Stack, write: bool = True) -> Path | None:
    """Print the summary line and the details; write the JSON file of the raw numbers."""
    print(result["summary"], flush=True)
    for line in result.get("details", []):
        print(f"  {line}", flush=True)
    if not write:
        return None
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{figure}-{stamp}.json"
    settings = {k: v for k, v in stack.env.items() if k.startswith("KASSA_")}
    settings.pop("KASSA_DATABASE_URL", None)
    document = {
        "figure": figure,
        "at": stamp,
        "git_commit": git_commit(),
        "machine": machine(),
        "settings": settings,
        **result,
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"  raw numbers: {path.relative_to(ROOT)}", flush=True)
    return path
