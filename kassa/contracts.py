"""What the API, the workflows and the activities say to each other: the inputs and results
of workflows, their messages, and activities.

Standard library, temporalio and the core only: workflow code imports this module inside the
sandbox. Every workflow, activity and handler takes exactly one of these dataclasses, so
fields with defaults can be added later without breaking running workflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from kassa.errors import ActorRequired, ReasonRequired
from kassa.ids import compensation_refund_id, stray_refund_id
from kassa.reasons import ReasonCode
from kassa.statuses import (
    Caller,
    OrderStatus,
    PaymentOutcome,
    RefundKind,
    RefundStatus,
    StrayKind,
    actor_role,
)

# Workflow type names: the client side (orchestration/client.py) starts workflows by name, so
# it never imports workflow code.
CHECKOUT_WORKFLOW = "CheckoutWorkflow"
REFUND_WORKFLOW = "RefundWorkflow"
RECONCILE_WORKFLOW = "ReconcileWorkflow"
REDELIVER_WORKFLOW = "RedeliverWebhookWorkflow"


@dataclass(frozen=True)
class LineItem:
    sku: str
    title: str
    unit_amount: int  # minor units (fen, cents)
    quantity: int


@dataclass(frozen=True)
class CheckoutInput:
    order_id: str
    customer_id: str
    items: list[LineItem]
    currency: str  # ISO-4217, upper case
    gateway: str
    expires_in_seconds: int
    return_url: str | None = None
    # While waiting, ask the gateway once after this long (a callback lost on a fast
    # payment is found early); then, if the maximum is not 0, twice as long each time up to
    # it. The gateway's redelivery and the close at the window's end find the rest.
    status_check_first_seconds: int = 60
    status_check_max_seconds: int = 0
    # How many gateway payments the buyer may open, the first included: after a decline the
    # buyer may try again within the window. Bounded, so a checkout cannot test stolen cards.
    max_payment_attempts: int = 1
    # A payment held for support escalates (NeedsAttention = held_payment_overdue) after
    # this long, and says again how long it has waited each such period; the hold goes on.
    hold_escalate_hours: int = 24
    # The API's seal over all of the above (orchestration/seal.py): the order is created only
    # for a checkout Kassa started, never for one started by hand in Temporal.
    seal: str = ""

    @property
    def amount(self) -> int:
        return sum(item.unit_amount * item.quantity for item in self.items)


@dataclass(frozen=True)
class PaymentSession:
    """A payment opened at the gateway, and what the buyer is shown to pay it: a page to
    go to (`payment_url`), or a QR code to scan (`qr_code`, its content)."""

    gateway: str
    payment_id: str | None  # the gateway's id of it, where it gives one at creation
    payment_url: str | None
    expires_at: datetime
    attempt: int = 1  # the first payment of the order, or a retry after a decline
    qr_code: str | None = None


@dataclass(frozen=True)
class CheckoutView:
    """The checkout; returned by the workflow's updates and query. `reason` is the detail,
    support's; the storefront is told `reason_code` and its text (`for_storefront`)."""

    order_id: str
    workflow_id: str
    status: OrderStatus
    amount: int
    currency: str
    customer_id: str
    gateway: str
    payment: PaymentSession | None = None
    reason: str | None = None
    can_retry: bool = False  # the payment was declined; the buyer may try again
    reason_code: ReasonCode | None = None

    def for_storefront(self) -> CheckoutView:
        return replace(self, reason=self.reason_code.text if self.reason_code else None)


@dataclass(frozen=True)
class PaymentEvent:
    """A verified gateway callback, as delivered to the checkout workflow."""

    gateway: str
    event_id: str
    order_id: str
    payment_id: str
    outcome: PaymentOutcome
    amount: int
    currency: str
    attempt: int = 1  # which of the order's gateway payments (see payment_reference)

    @classmethod
    def answered(
        cls, gateway: str, event_id: str, order_id: str, attempt: int, answer
    ) -> PaymentEvent:
        """What the gateway answered when asked (a status check, a close, reconciliation:
        anything with payment_id, outcome, amount and currency), as the event a callback
        would have been."""
        return cls(
            gateway,
            event_id,
            order_id,
            answer.payment_id,
            answer.outcome,
            answer.amount,
            answer.currency,
            attempt,
        )


@dataclass(frozen=True)
class PaymentCheck:
    """What the gateway says of the order's payment when asked (a status check, or after a
    close): the capture's id, amount and currency once there is one."""

    outcome: PaymentOutcome
    payment_id: str | None = None
    amount: int = 0
    currency: str = ""


@dataclass(frozen=True)
class ReviewDecision:
    """Support's decision on a payment held for review: refund it (the order fails), or,
    for more than the order's amount in its currency, accept it (the excess goes back and
    the order is fulfilled)."""

    note: str
    # The role and the key's holder, as the API writes it: "support:alice". Without one (a
    # decision typed in the Temporal UI) the update's validator refuses it (`check`).
    decided_by: str = ""
    accept: bool = False

    def check(self) -> None:
        """Only support decides, named the way the API names it, and says why."""
        if actor_role(self.decided_by) != Caller.SUPPORT:
            raise ActorRequired(
                "decided_by must name a support key's holder, e.g. support:alice",
                field="decided_by",
            )
        if not (self.note or "").strip():
            raise ReasonRequired("a decision needs a note", field="note")


# Who cancels when the checkout's workflow is cancelled in Temporal (the UI's "Request
# Cancellation", `temporal workflow cancel`): treated as support's cancel.
TEMPORAL_CANCEL = "temporal"


@dataclass(frozen=True)
class CancelRequest:
    reason: str = "cancelled by request"
    # From the API, the role and the key's holder: "storefront:shop-web". Without one (a
    # cancel typed in the Temporal UI) the update's validator refuses it (`check`).
    requested_by: str = ""

    @property
    def code(self) -> ReasonCode:
        if actor_role(self.requested_by) == Caller.STOREFRONT:
            return ReasonCode.CANCELLED_BY_STOREFRONT
        return ReasonCode.CANCELLED_BY_SUPPORT  # support, or a cancellation in Temporal

    def check(self) -> None:
        """A cancel update names its actor the way the API does; support's gives a reason."""
        role = actor_role(self.requested_by)
        if role is None:
            raise ActorRequired(
                "requested_by must name the key's role and holder, e.g. storefront:shop-web"
            )
        if role == Caller.SUPPORT and not (self.reason or "").strip():
            raise ReasonRequired("support's cancel needs a reason")


# ---- activity inputs and results -------------------------------------------------------------


@dataclass(frozen=True)
class Redelivery:
    """A storefront webhook support asked to send again (its outbox row's event id)."""

    event_id: str
    order_id: str


@dataclass(frozen=True)
class AuditRecord:
    """One support action for the audit log (db/audit.py): the API's, and a cancellation in
    Temporal, which the checkout records itself. `action_key` makes a repeat a no-op."""

    action_key: str
    actor: str
    action: str
    order_id: str
    reason: str
    before: dict
    after: dict
    request_id: str


@dataclass(frozen=True)
class OpenPaymentInput:
    checkout: CheckoutInput
    expires_at: datetime
    attempt: int = 1


@dataclass(frozen=True)
class OrderRef:
    order_id: str
    gateway: str = ""
    attempt: int = 1  # for gateway calls: which of the order's payments


@dataclass(frozen=True)
class StatusChange:
    order_id: str
    status: OrderStatus
    code: ReasonCode | None = None  # why, with its detail `reason`; both become the order's
    reason: str | None = None
    payment_id: str | None = None  # with PAID: the capture the order keeps


@dataclass(frozen=True)
class RiskDecision:
    approved: bool
    reason: str | None = None


@dataclass(frozen=True)
class ReconcileInput:
    """One reconciliation pass (the schedule's input, named in the UI rather than a bare
    number): compare the orders that ended in the last `lookback_hours` with the gateways."""

    lookback_hours: int = 72
    # Where the pass stands: None to start one; set when it continues as new, or by support's
    # re-run for one order (ReconcileProgress.order_id). Part of the one input: the SDK
    # decodes a workflow's arguments by their types only when all of them are sent.
    progress: ReconcileProgress | None = None


@dataclass(frozen=True)
class ReconcileReport:
    """One reconciliation pass: how many ended orders were compared with their gateway, and
    the captures found that no order keeps (each now has a refund on its way)."""

    orders_checked: int
    strays_found: list[str]  # gateway payment ids
    refunds_resumed: list[str] = field(default_factory=list)  # reserved, never started
    # Orders whose checkout stopped (terminated) before they ended: closed by reconciliation.
    orders_closed: list[str] = field(default_factory=list)
    batches: int = 0


class ReconcilePhase:
    """The parts of a pass, in order (plain strings: they travel in workflow payloads)."""

    ABANDONED = "abandoned"  # unfinished orders whose checkout no longer runs
    ENDED = "ended"  # ended orders against their gateway
    DONE = "done"


@dataclass(frozen=True)
class ReconcileProgress:
    """How far a reconciliation pass got: carried over continue-as-new, and what its
    `progress` query answers. `cursor` is the last order id done in `phase`."""

    since: datetime  # ended orders since then are compared (the lookback, fixed at the start)
    phase: str = ReconcilePhase.ABANDONED
    cursor: str | None = None
    orders_checked: int = 0
    strays_found: list[str] = field(default_factory=list)
    orders_closed: list[str] = field(default_factory=list)
    batches: int = 0
    page: int = 50  # orders per activity
    pages_per_run: int = 40  # then continue as new (the history stays bounded)
    page_attempts: int = 10  # tries of one page before the pass fails for good
    # Support's re-run for one order: only it, whenever it ended, and an unpaid one whose
    # checkout no longer runs is ended at once (no grace period).
    order_id: str | None = None


@dataclass(frozen=True)
class ReconcileBatch:
    """One page of a pass: up to `limit` orders of `phase` with ids after `after`."""

    phase: str
    since: datetime
    after: str | None
    limit: int
    order_id: str | None = None  # one order only (see ReconcileProgress)


@dataclass(frozen=True)
class ReconcileBatchResult:
    orders: int  # how many orders the page held (fewer than the limit: the phase is done)
    last_order_id: str | None
    strays_found: list[str] = field(default_factory=list)
    orders_closed: list[str] = field(default_factory=list)
    # The orders reconciliation ended, as the storefront's webhook tells them.
    ended_views: list[CheckoutView] = field(default_factory=list)


@dataclass(frozen=True)
class StorefrontEvent:
    """An outgoing webhook; `event_id` is stable so redeliveries can be deduplicated."""

    event_id: str
    type: str
    order: CheckoutView | None
    occurred_at: datetime
    refund: RefundView | None = None


# ---- refunds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundInput:
    refund_id: str  # also the gateway's idempotency key for this refund (out_request_no)
    order_id: str
    gateway: str
    amount: int
    currency: str
    reason: str
    requested_by: Caller = Caller.STOREFRONT
    # Set for the refund of a stray capture: which capture of which of the order's gateway
    # payments, and why it is stray. Unset: the payment the order kept.
    payment_id: str | None = None
    stray: StrayKind | None = None
    attempt: int | None = None
    customer_id: str | None = None  # whose money it is, for support (unset: not known)

    @property
    def kind(self) -> str:
        """Why the money goes back (the RefundKind search attribute): a stray capture's
        kind, a compensation (Kassa's own), or `requested`."""
        if self.stray:
            return str(self.stray)
        if self.requested_by == Caller.SYSTEM:
            return str(RefundKind.COMPENSATION)
        return str(RefundKind.REQUESTED)

    @classmethod
    def compensation(cls, checkout: CheckoutInput, reason: str) -> RefundInput:
        """The one refund that gives the buyer everything back when fulfilment failed."""
        return cls(
            compensation_refund_id(checkout.order_id),
            checkout.order_id,
            checkout.gateway,
            checkout.amount,
            checkout.currency,
            reason,
            Caller.SYSTEM,
            customer_id=checkout.customer_id,
        )

    @classmethod
    def for_stray(
        cls, event: PaymentEvent, gateway: str, kind: StrayKind, customer_id: str | None = None
    ) -> RefundInput:
        """The one refund that gives back a capture no order keeps."""
        return cls(
            stray_refund_id(event.payment_id),
            event.order_id,
            gateway,
            event.amount,
            event.currency,
            f"{kind}: payment {event.payment_id}",
            Caller.SYSTEM,
            payment_id=event.payment_id,
            stray=kind,
            attempt=event.attempt,
            customer_id=customer_id,
        )


@dataclass(frozen=True)
class RefundView:
    """A refund; `failure_reason` is the detail, support's, and `reason` whatever its
    requester wrote. The storefront is told `failure_code` and its text, and the reason of
    its own refunds only (`for_storefront`)."""

    refund_id: str
    order_id: str
    status: RefundStatus
    amount: int
    currency: str
    reason: str | None
    failure_reason: str | None = None
    failure_code: ReasonCode | None = None
    requested_by: Caller = Caller.STOREFRONT

    def for_storefront(self) -> RefundView:
        return replace(
            self,
            reason=self.reason if self.requested_by == Caller.STOREFRONT else None,
            failure_reason=self.failure_code.text if self.failure_code else None,
        )


@dataclass(frozen=True)
class RefundEvent:
    """A verified gateway callback about a refund."""

    gateway: str
    event_id: str
    refund_id: str
    status: RefundStatus


@dataclass(frozen=True)
class RefundFailure:
    refund_id: str
    code: ReasonCode
    reason: str
