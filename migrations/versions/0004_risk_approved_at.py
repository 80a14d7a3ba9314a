"""risk approved at

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "orders", sa.Column("risk_approved_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Orders that got past risk control before this column existed still count towards
    # their customer's velocity limit (approved about when they were created).
    op.execute(
        "UPDATE orders SET risk_approved_at = created_at "
        "WHERE status NOT IN ('created', 'rejected')"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("orders", "risk_approved_at")
