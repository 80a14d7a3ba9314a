"""The `kassa` command: `kassa run` (the embedded stack), `kassa migrate`, `kassa ledger check`,
`kassa codec-server` (decrypts payloads for support's Temporal UI), `kassa keys hash` (an API
key's SHA-256 for KASSA_API_KEYS)."""

from __future__ import annotations

import argparse
import asyncio
import sys

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
    if not settings.database_url:
        parser.error(f"{args.command} needs DATABASE_URL (kassa run prints it)")
    if args.command == "ledger":
        return asyncio.run(ledger_check(settings))
    from db.engine import migrate

    migrate(settings.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
