"""The double-entry ledger's postings (资金流水), pure: every money movement is one posting
whose entries sum to zero per currency. Debits are positive, credits negative.

Accounts:
  gateway:<name>  money the gateway holds for us (asset; its balance is what we can refund)
  revenue         what buyers paid for orders (credit balance)
  refunds         what went back to buyers (contra-revenue, debit balance)
  unallocated     money captured that no order keeps (late or second payments), owed back

db/ledger.py writes them; the database enforces balance and append-only, and a posting's
key makes a retried write a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

REVENUE = "revenue"
REFUNDS = "refunds"
UNALLOCATED = "unallocated"


def gateway_account(gateway: str) -> str:
    return f"gateway:{gateway}"


@dataclass(frozen=True)
class Posting:
    key: str  # unique: posting the same movement again is a no-op
    order_id: str
    kind: str
    currency: str
    entries: dict[str, int]  # account -> signed amount in minor units


def capture(order_id: str, gateway: str, amount: int, currency: str) -> Posting:
    """The buyer paid the order: the gateway holds it, and it is revenue."""
    entries = {gateway_account(gateway): amount, REVENUE: -amount}
    return Posting(f"capture:{order_id}", order_id, "capture", currency, entries)


def refund(order_id: str, gateway: str, refund_id: str, amount: int, currency: str) -> Posting:
    entries = {REFUNDS: amount, gateway_account(gateway): -amount}
    return Posting(f"refund:{refund_id}", order_id, "refund", currency, entries)


def stray_capture(order_id: str, gateway: str, payment_id: str, amount: int, currency: str):
    """Money no order keeps: the gateway holds it, and it is owed back."""
    entries = {gateway_account(gateway): amount, UNALLOCATED: -amount}
    return Posting(f"stray:{payment_id}", order_id, "stray_capture", currency, entries)


def stray_refund(order_id: str, gateway: str, payment_id: str, amount: int, currency: str):
    entries = {UNALLOCATED: amount, gateway_account(gateway): -amount}
    return Posting(f"stray-refund:{payment_id}", order_id, "stray_refund", currency, entries)
