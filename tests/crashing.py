"""The processes the crash tests (invariant 6) SIGKILL and start again: a Temporal dev
server of their own, the worker, the API. tests/purchases.py is what runs through them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from temporalio.client import Client

from kassa.settings import Settings
from orchestration.temporal import data_converter, ensure_search_attributes
from tests.support import eventually
from tooling.devstack import api_command, temporal_server_command

SEED = int(os.environ.get("KASSA_CRASH_SEED", "6"))
PATIENCE = 120  # seconds; generous, the machines are shared and noisy


def process_env(settings: Settings) -> dict[str, str]:
    """The environment a worker or API subprocess reads its settings from."""
    return {
        **os.environ,
        "KASSA_DATABASE_URL": settings.database_url,
        "KASSA_TEMPORAL_ADDRESS": settings.temporal_address,
        "KASSA_TASK_QUEUE": settings.task_queue,
        "KASSA_SANDBOX_URL": settings.sandbox_url,
        "KASSA_PUBLIC_API_URL": settings.public_api_url,
        "KASSA_STATUS_CHECK_FIRST_SECONDS": str(settings.status_check_first_seconds),
        "KASSA_STATUS_CHECK_MAX_SECONDS": str(settings.status_check_max_seconds),
        "KASSA_EXPIRES_IN_MIN": str(settings.expires_in_min),
        "KASSA_WORKER_METRICS_PORT": str(settings.worker_metrics_port),
        "KASSA_TEMPORAL_METRICS_PORT": str(settings.temporal_metrics_port),
    }


class Process:
    """A server process a test kills with SIGKILL and starts again, the same way each time.
    Its output goes to `log` (appended across restarts) for the post-mortem."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict | None = None):
        self.name, self.command, self.log, self.env = name, command, log, env
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        """Raises if the process ended on its own: a crash test must not hide that."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"the {self.name} exited by itself (code {self.proc.returncode}); see {self.log}"
            )
        return self.proc is not None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def worker_process(settings: Settings, log: Path) -> Process:
    return Process("worker", [sys.executable, "-m", "worker"], log, process_env(settings))


class TemporalServer(Process):
    """`temporal server start-dev` persisted to a SQLite file, started the way `kassa run`
    starts it (tooling/devstack.py), on a port of the test's: killed, it comes back on the same
    file and port with everything it had committed."""

    def __init__(self, db_file: Path, port: int, log: Path):
        command = temporal_server_command(db_file, port, ui_port=None)
        super().__init__("Temporal server", command, log)
        self.address = f"127.0.0.1:{port}"

    async def start(self) -> Client:
        """Start, and return a client once the server answers (with the search attributes)."""
        self.spawn()

        async def answering():
            self.alive()
            try:
                client = await Client.connect(
                    self.address, data_converter=data_converter(Settings())
                )
                await ensure_search_attributes(client)
            except Exception:  # not listening yet, or not ready to serve
                return None
            return client

        return await eventually(answering, timeout=PATIENCE, interval=0.2)


class ApiProcess(Process):
    """The API as `kassa run` serves it: uvicorn with the app factory, settings from the
    environment."""

    def __init__(self, settings: Settings, port: int, log: Path):
        command = api_command("127.0.0.1", port)
        super().__init__("API", command, log, process_env(settings))
        self.url = f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self.spawn()

        async def healthy():
            self.alive()
            try:
                async with httpx.AsyncClient(base_url=self.url) as http:
                    return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, timeout=PATIENCE, interval=0.2)
