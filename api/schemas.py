"""The storefront contract: request and response bodies of /v1 (pydantic lives at this edge
only; `to_checkout_input` is the one conversion into the core's contracts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
)

from kassa import money
from kassa.contracts import CheckoutInput, CheckoutView, LineItem
from kassa.reasons import ReasonCode
from kassa.settings import MAX_LISTED, Settings
from kassa.statuses import Caller, OrderStatus, RefundStatus

# Each pattern below is the whole rule, and the same for the server (pydantic) and for the
# published schema (JSON Schema's ECMA-262 regexes): no `\s`, `\w` or lookarounds, whose
# meaning differs between the two.

# Refused anywhere: control characters (C0, DEL, C1 with NEL; PostgreSQL refuses NUL), line
# and paragraph separators, and the bidi controls (marks, embeddings, overrides, isolates),
# which reorder or break what support reads in the Temporal UI.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# What str.strip() takes off besides the control characters: a text needs one other character.
_BLANK = r"\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = rf"^[^{_CONTROL}]*[^{_CONTROL}{_BLANK}][^{_CONTROL}]*$"


def _text(max_length: int) -> object:
    """Free text: not blank, no control characters, at most `max_length` characters as sent;
    trimmed once valid."""
    return Annotated[
        str,
        Field(min_length=1, max_length=max_length, pattern=TEXT_PATTERN),
        AfterValidator(str.strip),
    ]


def _whole(value: Any) -> Any:
    """JSON has numbers, not ints and floats: 100.0 is the integer 100 (JSON Schema agrees);
    9.99, "100" and true are no integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _whole_number(**constraints: Any) -> object:
    """An integer: strict, but 100.0 counts. The constraints apply to the integer, so the
    published schema says `minimum` and `exclusiveMinimum` for them."""
    return Annotated[StrictInt, Field(**constraints), BeforeValidator(_whole)]


# A page's cursor (a ledger transaction's key): anything but the control characters, which no
# key has (and PostgreSQL refuses NUL).
CURSOR_PATTERN = rf"^[^{_CONTROL}]+$"

# Any of these characters, but not "." or ".." alone: those are no path segment a URL keeps.
ID_PATTERN = r"^([A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*|[.]{3,})$"
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]

# Active ISO-4217 currencies with an exponent, funds excepted (kassa/money.py refuses the others).
CURRENCIES = money.CURRENCIES

# An http(s) URL whose every match the URL parser takes: a host name ending in a label of
# letters (no IP literal), an optional port, a path, query and fragment of printable ASCII.
_PORT = r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
RETURN_URL_PATTERN = (
    r"^https?://([A-Za-z0-9]+(-[A-Za-z0-9]+)*[.])*[A-Za-z]+" + _PORT + r"([/?#][!-~]*)?$"
)


def _url(value: str) -> str:
    """Normalized as before (`http://a` -> `http://a/`); every match of the pattern parses."""
    return str(AnyHttpUrl(value))


class LineItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")]
    title: _text(200)
    unit_amount: _whole_number(gt=0) = Field(description="Minor units (fen, cents).")
    quantity: _whole_number(ge=1)


class CheckoutIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "cus_alice",
                    "items": [
                        {
                            "sku": "course-python-101",
                            "title": "Python 101",
                            "unit_amount": 19900,
                            "quantity": 1,
                        }
                    ],
                    "currency": "CNY",
                    "gateway": "sandbox",
                    "return_url": "https://shop.example.com/orders/done",
                }
            ]
        },
    )

    order_id: Identifier | None = Field(None, description="Your reference; generated if absent.")
    customer_id: _text(128)
    items: Annotated[list[LineItemIn], Field(min_length=1)]
    currency: Annotated[
        str,
        Field(
            max_length=3,  # checked first: a long one is refused without being echoed
            description="ISO-4217 code, upper case: CNY, USD, JPY…",
            json_schema_extra={"enum": CURRENCIES},
        ),
    ]
    gateway: Annotated[str, Field(min_length=1, max_length=32)]
    expires_in_seconds: _whole_number() | None = Field(
        None, description="The payment window; default: the deployment's."
    )
    return_url: (
        Annotated[str, Field(max_length=2083, pattern=RETURN_URL_PATTERN), AfterValidator(_url)]
        | None
    ) = None

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, code: str) -> str:
        money.currency_exponent(code)  # raises ValueError, which pydantic reports on this field
        return code

    def to_checkout_input(
        self, order_id: str, expires_in_seconds: int, settings: Settings
    ) -> CheckoutInput:
        return CheckoutInput(
            order_id=order_id,
            customer_id=self.customer_id,
            items=[LineItem(i.sku, i.title, i.unit_amount, i.quantity) for i in self.items],
            currency=self.currency,
            gateway=self.gateway,
            expires_in_seconds=expires_in_seconds,
            return_url=str(self.return_url) if self.return_url else None,
            status_check_first_seconds=settings.status_check_first_seconds,
            status_check_max_seconds=settings.status_check_max_seconds,
            max_payment_attempts=settings.max_payment_attempts,
            hold_escalate_hours=settings.hold_escalate_hours,
        )


CAN_RETRY = (
    "The payment was declined and the buyer may try again: until the payment window closes, "
    "POST /v1/orders/{order_id}/retry opens another payment."
)
REASON_CODE = "Why the order stands where it does, if there is something to say: a stable code."
REASON = "The reason code's short text, fixed per code."


def text_of(code: ReasonCode | None) -> str | None:
    return code.text if code else None


def order_can_retry(order, now: datetime) -> bool:
    """`can_retry` as the order row tells it, for GET /v1/orders/{order_id}: declined, the
    buyer may try again (the next payment's opening clears it, the order's end replaces
    it), and the payment window is still open."""
    return (
        order.reason_code == ReasonCode.DECLINED_MAY_RETRY
        and order.expires_at is not None
        and now < order.expires_at
    )


class PaymentActionOut(BaseModel):
    """What to show the buyer: send them to `url` (redirect), or show `qr` as a QR code."""

    kind: Literal["redirect", "qr"]
    url: str | None = None
    qr: str | None = None


class PaymentOut(BaseModel):
    gateway: str
    payment_url: str | None = Field(description="For a redirect: the page the buyer pays on.")
    action: PaymentActionOut
    expires_at: datetime
    attempt: int = Field(description="1 for the first payment, 2 for the retry after a decline…")

    @classmethod
    def of(cls, payment) -> PaymentOut:
        """From the core's PaymentSession."""
        if payment.qr_code is not None:
            action = PaymentActionOut(kind="qr", qr=payment.qr_code)
        else:
            action = PaymentActionOut(kind="redirect", url=payment.payment_url)
        return cls(
            gateway=payment.gateway,
            payment_url=payment.payment_url,
            action=action,
            expires_at=payment.expires_at,
            attempt=payment.attempt,
        )


class CheckoutOut(BaseModel):
    order_id: str
    workflow_id: str
    status: OrderStatus
    amount: int
    currency: str
    payment: PaymentOut | None
    reason_code: ReasonCode | None = Field(None, description=REASON_CODE)
    reason: str | None = Field(None, description=REASON)
    can_retry: bool = Field(False, description=CAN_RETRY)

    @classmethod
    def of(cls, view: CheckoutView) -> CheckoutOut:
        view = view.for_storefront()
        payment = view.payment
        return cls(
            order_id=view.order_id,
            workflow_id=view.workflow_id,
            status=view.status,
            amount=view.amount,
            currency=view.currency,
            payment=PaymentOut.of(payment) if payment else None,
            reason_code=view.reason_code,
            reason=view.reason,
            can_retry=view.can_retry,
        )


class OrderOut(BaseModel):
    order_id: str
    status: OrderStatus
    reason_code: ReasonCode | None = Field(description=REASON_CODE)
    reason: str | None = Field(description=REASON)
    amount: int
    currency: str
    customer_id: str
    gateway: str
    payment_url: str | None
    payment_attempts: int
    expires_at: datetime | None
    refunded_amount: int
    refunds: list[RefundOut] = Field(
        [],
        max_length=MAX_LISTED,
        description=f"The order's refunds, oldest first: at most {MAX_LISTED} (an order may "
        "have at most KASSA_MAX_REFUNDS_PER_ORDER, itself at most as many).",
    )
    refunds_has_more: bool = Field(
        False, description=f"The order has more refunds than the {MAX_LISTED} listed."
    )
    can_retry: bool = Field(False, description=CAN_RETRY)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order, refunds=()) -> OrderOut:
        """From the order row and its refund rows (one more than listed says there are
        more)."""
        return cls(
            order_id=order.order_id,
            status=order.status,
            reason_code=order.reason_code,
            reason=text_of(order.reason_code),
            amount=order.amount,
            currency=order.currency,
            customer_id=order.customer_id,
            gateway=order.gateway,
            payment_url=order.payment_url,
            payment_attempts=order.payment_attempts,
            expires_at=order.expires_at,
            refunded_amount=order.refunded_amount,
            refunds=[RefundOut.of(refund) for refund in refunds[:MAX_LISTED]],
            refunds_has_more=len(refunds) > MAX_LISTED,
            can_retry=order_can_retry(order, datetime.now(UTC)),
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: _whole_number(gt=0) | None = Field(
        None, description="Minor units; default: everything not yet refunded."
    )
    reason: _text(500) | None = None  # default: who asked


class RefundOut(BaseModel):
    refund_id: str
    order_id: str
    status: RefundStatus
    amount: int
    currency: str
    reason: str | None = Field(description="As given, for the storefront's own refunds.")
    failure_code: ReasonCode | None = Field(description="Why it failed: a stable code.")
    failure_reason: str | None = Field(description="The failure code's short text.")
    requested_by: str
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, refund) -> RefundOut:
        """From the refund row."""
        return cls(
            refund_id=refund.refund_id,
            order_id=refund.order_id,
            status=refund.status,
            amount=refund.amount,
            currency=refund.currency,
            reason=refund.reason if refund.requested_by == Caller.STOREFRONT else None,
            failure_code=refund.failure_code,
            failure_reason=text_of(refund.failure_code),
            requested_by=refund.requested_by,
            created_at=refund.created_at,
            completed_at=refund.completed_at,
        )


class SupportRefundOut(RefundOut):
    """A refund as support sees it: its reason whoever asked, and why it failed in full."""

    reason: str
    failure_detail: str | None

    @classmethod
    def of(cls, refund) -> SupportRefundOut:
        shown = RefundOut.of(refund).model_dump(exclude={"reason"})
        return cls(**shown, reason=refund.reason, failure_detail=refund.failure_reason)


class SupportOrderOut(OrderOut):
    """An order as support sees it: with the details behind its reason code and its refunds'."""

    reason_detail: str | None = Field(
        description="What happened in full: thresholds, notes, the gateway's own errors."
    )
    refunds: list[SupportRefundOut] = Field([], max_length=MAX_LISTED)

    @classmethod
    def of(cls, order, refunds=()) -> SupportOrderOut:
        shown = OrderOut.of(order, refunds).model_dump(exclude={"refunds"})
        return cls(
            **shown,
            reason_detail=order.status_reason,
            refunds=[SupportRefundOut.of(refund) for refund in refunds[:MAX_LISTED]],
        )


class LedgerEntryOut(BaseModel):
    account: str
    amount: int = Field(description="Debit positive, credit negative; minor units.")
    currency: str


class LedgerTransactionOut(BaseModel):
    key: str
    kind: str
    created_at: datetime
    entries: list[LedgerEntryOut]

    @classmethod
    def of_rows(cls, rows) -> list[LedgerTransactionOut]:
        """From (transaction, entry) rows in order, one transaction per key."""
        transactions: dict[int, LedgerTransactionOut] = {}
        for txn, entry in rows:
            out = transactions.setdefault(
                txn.id, cls(key=txn.key, kind=txn.kind, created_at=txn.created_at, entries=[])
            )
            out.entries.append(
                LedgerEntryOut(account=entry.account, amount=entry.amount, currency=entry.currency)
            )
        return list(transactions.values())


class LedgerPageOut(BaseModel):
    """A page of the order's ledger transactions, oldest first."""

    transactions: list[LedgerTransactionOut] = Field(max_length=MAX_LISTED)
    has_more: bool = Field(
        description="More transactions follow: ask again with `starting_after` set to the "
        "last one's `key`."
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: _text(500)
    decision: Literal["refund", "accept"] = Field(
        "refund", description="accept: only for more than the amount; the excess is refunded"
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: _text(500) = "cancelled by request"


class AuditEntryOut(BaseModel):
    """One support action on the order."""

    actor: str = Field(description="The key's role and holder: `support:alice`.")
    action: str = Field(description="`cancel`, `review` or `refund`.")
    order_id: str
    reason: str
    before: dict[str, Any] = Field(description="The order before: its `status`.")
    after: dict[str, Any] = Field(
        description="The order after: its `status` (for a refund, also the refund's id and "
        "amount; for a review, the decision)."
    )
    request_id: str = Field(description="The request's `X-Request-ID`, or one generated.")
    created_at: datetime

    @classmethod
    def of(cls, row) -> AuditEntryOut:
        return cls(
            actor=row.actor,
            action=row.action,
            order_id=row.order_id,
            reason=row.reason,
            before=row.before,
            after=row.after,
            request_id=row.request_id,
            created_at=row.created_at,
        )


class AuditLogOut(BaseModel):
    """Support's actions on the order, oldest first."""

    entries: list[AuditEntryOut] = Field(max_length=MAX_LISTED)
    has_more: bool = Field(description=f"More than {MAX_LISTED} entries: only the first shown.")


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: _text(500)
    event_id: Annotated[str, Field(min_length=1, max_length=128, pattern=CURSOR_PATTERN)] | None = (
        Field(None, description="The webhook to send again; default: the order's last one.")
    )


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: _text(500)


class ReconcileOut(BaseModel):
    order_id: str
    workflow_id: str = Field(
        description="The reconciliation's workflow: its result lists the captures given back "
        "and whether the order was ended."
    )


class RedeliveryOut(BaseModel):
    order_id: str
    event_id: str = Field(description="The webhook sent again: same id, same body.")
    type: str
    workflow_id: str = Field(description="The redelivery's workflow, retried for a day.")
