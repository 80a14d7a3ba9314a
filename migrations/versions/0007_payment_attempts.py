"""Orders count their gateway payments: a buyer may try again after a decline.

Revision ID: 0007_payment_attempts
Revises: 0006_ledger_no_truncate
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_payment_attempts"
down_revision: str | Sequence[str] | None = "0006_ledger_no_truncate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("payment_attempts", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("orders", "payment_attempts")
