"""reason codes beside the orders' and refunds' reasons

The storefront is told the code (kassa/reasons.py); the reason beside it is the detail,
support's. Stored as the code's value in a plain VARCHAR, like the statuses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:32:42.538046

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("orders", sa.Column("reason_code", sa.String(length=32), nullable=True))
    op.add_column("refunds", sa.Column("failure_code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("refunds", "failure_code")
    op.drop_column("orders", "reason_code")
