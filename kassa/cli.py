"""The `kassa` command."""

from __future__ import annotations

import argparse
import sys

from kassa.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the embedded stack in the foreground (make run)")
    commands.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "run":
        from kassa.devstack import run

        return run(settings)
    if not settings.database_url:
        parser.error("migrate needs DATABASE_URL")
    from kassa.db import migrate

    migrate(settings.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
