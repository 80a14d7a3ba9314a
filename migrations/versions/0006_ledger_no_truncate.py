"""The ledger refuses TRUNCATE too (row triggers do not see it).

Revision ID: 0006_ledger_no_truncate
Revises: 0005_stray_captures
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_ledger_no_truncate"
down_revision: str | Sequence[str] | None = "0005_stray_captures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ledger_entries", "ledger_transactions")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
