"""What happens after the buyer paid: each step beside its undo, in the order they run.

Adding a step is one activity (taking the CheckoutInput, idempotent), one line here, and
its test (docs/adding-a-step.md). An undo must be idempotent and must tolerate that its step
never ran, since the step may have failed before doing anything. If a step fails for good,
the undos of the steps run so far (its own included) run last first, and the buyer's money
goes back; the checkout ends `refunded`.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.entitlements import EntitlementActivities
    from activities.invoices import InvoiceActivities
    from activities.ledger import LedgerActivities


@dataclass(frozen=True)
class Step:
    does: str
    action: object  # an activity method taking the CheckoutInput
    undoes: str | None = None
    undo: object | None = None  # likewise; None: nothing to undo (a fact, like a posting)


AFTER_PAYMENT = (
    Step("book the capture", LedgerActivities.book_capture),
    Step(
        "grant access",
        EntitlementActivities.grant_entitlements,
        "revoke access",
        EntitlementActivities.revoke_entitlements,
    ),
    Step(
        "issue the invoice",
        InvoiceActivities.issue_invoice,
        "void the invoice",
        InvoiceActivities.void_invoice,
    ),
)
