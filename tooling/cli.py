"""The `kassa` command: `kassa run` (the embedded stack), `kassa migrate`, `kassa temporal
setup` (the namespace and search attributes on an external Temporal), `kassa ledger check`,
`kassa codec-server` (decrypts payloads for support's Temporal UI), `kassa keys hash` (an API
key's SHA-256 for KASSA_API_KEYS), `kassa support stuck` / `kassa support show ORDER` (support's
desk: tooling/support.py), `kassa demo` (drives purchases through the API: tooling/demo.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import timedelta

from kassa.settings import MIN_SECRET_LENGTH, Settings, get_settings, key_hash


async def ledger_check(settings: Settings) -> int:
    """Print every violation of the ledger's invariants; exit status 1 if there is any."""
    import httpx

    from db.engine import make_engine, make_sessionmaker
    from gateways import build_gateways
    from tooling.ledger_check import check

    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient() as http:
            problems = await check(make_sessionmaker(engine), build_gateways(settings, http))
    finally:
        await engine.dispose()
    for problem in problems:
        print(f"VIOLATION {problem}")
    print(f"ledger check: {len(problems)} violation(s)")
    return 1 if problems else 0


async def temporal_setup(settings: Settings, retention_days: int, wait_seconds: float) -> int:
    """Make the Temporal server ready for Kassa: its namespace (registered if missing) and
    Kassa's search attributes (kassa/search.py, the one list). Waits for a server that is
    still starting, and for a new namespace to serve; safe to run again."""
    from temporalio.service import RPCError, RPCStatusCode

    from orchestration import temporal

    # Passing: the server or a new namespace is not ready yet. Anything else (no permission,
    # a bad request) fails at once.
    passing = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED}
    deadline = time.monotonic() + wait_seconds
    created, added = False, []
    while True:
        try:
            client = await temporal.connect(settings)
            retention = timedelta(days=retention_days)
            created = await temporal.ensure_namespace(client, retention) or created
            added += await temporal.ensure_search_attributes(client)
            await client.count_workflows()  # the namespace serves requests
            break
        except (RuntimeError, RPCError) as err:  # RuntimeError: the server does not answer
            if isinstance(err, RPCError) and err.status not in passing:
                print(f"Temporal refused ({err.status.name}): {err.message}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"Temporal is not ready after {wait_seconds:.0f}s: {err}", file=sys.stderr)
                return 1
            await asyncio.sleep(1)
    namespace = settings.temporal_namespace
    print(
        f"namespace {namespace}: "
        + (f"registered (retention {retention_days} days)" if created else "exists")
    )
    print("search attributes: " + (f"registered {', '.join(added)}" if added else "all there"))
    return 0


async def support(settings: Settings, action: str, order_id: str | None, limit: int) -> int:
    """`stuck`: the table of everything needing a human; `show`: one order's story."""
    from db.engine import make_engine, make_sessionmaker
    from orchestration import temporal
    from tooling import support as desk

    client = await temporal.connect(settings)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        if action == "stuck":
            print(desk.render_stuck(await desk.stuck(client, sessions, limit)))
            return 0
        story = await desk.show(client, sessions, order_id)
    finally:
        await engine.dispose()
    if story is None:
        print(f"no order {order_id}", file=sys.stderr)
        return 1
    print(story)
    return 0


def keys_hash(stdin=None) -> int:
    """Print the SHA-256 (hex) of the API key read from stdin (one line), for KASSA_API_KEYS:
    the key itself never goes into the configuration. Refuses keys too short for production."""
    key = (stdin or sys.stdin).readline().strip()
    if len(key) < MIN_SECRET_LENGTH:
        print(
            f"a key must be at least {MIN_SECRET_LENGTH} characters; e.g. "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"',
            file=sys.stderr,
        )
        return 2
    print(key_hash(key))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the embedded stack in the foreground (make run)")
    commands.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    temporal_parser = commands.add_parser("temporal", help="the Temporal server Kassa uses")
    temporal_parser.add_argument(
        "action",
        choices=["setup"],
        help="register the namespace (if missing) and Kassa's search attributes",
    )
    temporal_parser.add_argument(
        "--retention-days", type=int, default=30, help="how long a new namespace keeps histories"
    )
    temporal_parser.add_argument(
        "--wait", type=float, default=120, help="seconds to wait for the server to be ready"
    )
    codec_parser = commands.add_parser(
        "codec-server", help="serve the payload codec for the Temporal UI (KASSA_CODEC_PORT)"
    )
    codec_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ledger_parser = commands.add_parser("ledger", help="the double-entry ledger")
    ledger_parser.add_argument(
        "action", choices=["check"], help="verify every invariant against the gateways"
    )
    keys_parser = commands.add_parser("keys", help="API keys")
    keys_parser.add_argument(
        "action", choices=["hash"], help="print the SHA-256 of the key read from stdin"
    )
    support_parser = commands.add_parser(
        "support", help="support's desk (Temporal and the database)"
    )
    support_actions = support_parser.add_subparsers(dest="action", required=True)
    stuck_parser = support_actions.add_parser(
        "stuck", help="everything that needs a human, oldest first"
    )
    stuck_parser.add_argument(
        "--limit", type=int, default=500, help="at most this many from each source"
    )
    show_parser = support_actions.add_parser(
        "show", help="an order, its checkout in Temporal, its refunds and ledger"
    )
    show_parser.add_argument("order_id", metavar="ORDER")
    demo_parser = commands.add_parser(
        "demo", help="drive realistic purchases through the API of a running Kassa (make run)"
    )
    demo_parser.add_argument("--checkouts", type=int, default=50, help="how many purchases")
    demo_parser.add_argument("--concurrency", type=int, default=10, help="buyers at once")
    demo_parser.add_argument("--seed", type=int, help="the same seed, the same mix and baskets")
    demo_parser.add_argument(
        "--api", help="the API's URL (default: http://127.0.0.1:KASSA_API_PORT)"
    )
    demo_parser.add_argument(
        "--key", help="the storefront's API key (default: the development key)"
    )
    demo_parser.add_argument(
        "--expire-after",
        type=int,
        metavar="SECONDS",
        help="open the walked-away checkouts with this payment window and wait until they "
        "are expired (default: leave them awaiting payment)",
    )
    args = parser.parse_args(argv)
    if args.command == "keys":  # needs no settings: run it before any are configured
        return keys_hash()
    settings = get_settings()
    if args.command == "run":
        from tooling.devstack import run

        return run(settings)
    if args.command == "codec-server":
        from tooling.codec_server import run as serve_codec

        return serve_codec(settings, host=args.host)
    if args.command == "demo":
        return demo(settings, args)
    if args.command == "temporal":
        _exit_past_temporal(asyncio.run(temporal_setup(settings, args.retention_days, args.wait)))
    if not settings.database_url:
        parser.error(f"{args.command} needs DATABASE_URL (kassa run prints it)")
    if args.command == "ledger":
        return asyncio.run(ledger_check(settings))
    if args.command == "support":
        order_id = getattr(args, "order_id", None)
        limit = getattr(args, "limit", 500)
        _exit_past_temporal(asyncio.run(support(settings, args.action, order_id, limit)))
    from db.engine import migrate

    migrate(settings.database_url)
    return 0


def demo(settings: Settings, args: argparse.Namespace) -> int:
    from kassa.settings import DEV_STOREFRONT_KEY
    from tooling import demo as load

    if args.checkouts < 1 or args.concurrency < 1:
        print("--checkouts and --concurrency must be at least 1", file=sys.stderr)
        return 2
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    api_url = (args.api or f"http://{host}:{settings.api_port}").rstrip("/")
    return load.main(
        api_url,
        args.key or DEV_STOREFRONT_KEY,
        args.checkouts,
        args.concurrency,
        args.seed,
        args.expire_after,
    )


def _exit_past_temporal(code: int) -> None:
    """Exit a command that used a Temporal client without the interpreter's teardown: the
    SDK's Rust threads may still run then and abort the process (temporalio/sdk-python#300),
    turning a command that succeeded into exit status 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
