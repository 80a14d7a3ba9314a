"""Post the ledger capture of every order paid before the ledger existed.

Revision ID: 0004_backfill_captures
Revises: 86db969755ff

Orders paid before migration 0002 have no capture in the ledger, so `kassa ledger check`
would rightly report that the gateway holds money the books do not show. Refunds cannot
predate the ledger (they arrived with it), so captures are all that is missing. Idempotent
by the transaction key, like every posting.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_backfill_captures"
down_revision: str | Sequence[str] | None = "86db969755ff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        WITH missing AS (
            SELECT order_id, gateway, amount, currency FROM orders o
            WHERE status IN ('paid', 'fulfilled', 'partially_refunded', 'refunded')
              AND NOT EXISTS (SELECT 1 FROM ledger_transactions t
                              WHERE t.key = 'capture:' || o.order_id)
        ), posted AS (
            INSERT INTO ledger_transactions (key, order_id, kind)
            SELECT 'capture:' || order_id, order_id, 'capture' FROM missing
            RETURNING id, order_id
        )
        INSERT INTO ledger_entries (transaction_id, account, amount, currency)
        SELECT p.id, 'gateway:' || m.gateway, m.amount, m.currency
          FROM posted p JOIN missing m USING (order_id)
        UNION ALL
        SELECT p.id, 'revenue', -m.amount, m.currency
          FROM posted p JOIN missing m USING (order_id)
        """
    )


def downgrade() -> None:
    pass  # the ledger is append-only: postings are not taken back
