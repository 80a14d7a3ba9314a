"""The storefront contract: request and response bodies of /v1 (pydantic lives at this edge
only; `to_checkout_input` is the one conversion into the core's contracts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from kassa.contracts import CheckoutInput, CheckoutView, LineItem
from kassa.money import currency_exponent
from kassa.settings import Settings
from kassa.statuses import OrderStatus, RefundStatus


def _text(max_length: int) -> object:
    """Free text: trimmed, not empty, no control characters (PostgreSQL refuses NUL)."""
    return Annotated[
        str,
        StringConstraints(
            strip_whitespace=True,
            min_length=1,
            max_length=max_length,
            pattern=r"^[^\x00-\x1f\x7f]+$",
        ),
    ]


Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class LineItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")]
    title: _text(200)
    unit_amount: Annotated[StrictInt, Field(gt=0, description="Minor units (fen, cents).")]
    quantity: Annotated[StrictInt, Field(ge=1)]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Identifier | None = Field(None, description="Your reference; generated if absent.")
    customer_id: _text(128)
    items: Annotated[list[LineItemIn], Field(min_length=1)]
    currency: Annotated[str, Field(description="ISO-4217 code, upper case: CNY, USD, JPY…")]
    gateway: Annotated[str, Field(min_length=1, max_length=32)]
    expires_in_seconds: StrictInt | None = None
    return_url: AnyHttpUrl | None = None

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, code: str) -> str:
        currency_exponent(code)  # raises ValueError, which pydantic reports on this field
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
        )


class PaymentOut(BaseModel):
    gateway: str
    payment_url: str
    expires_at: datetime
    attempt: int = Field(description="1 for the first payment, 2 for the retry after a decline…")


class CheckoutOut(BaseModel):
    order_id: str
    workflow_id: str
    status: OrderStatus
    amount: int
    currency: str
    payment: PaymentOut | None
    reason: str | None = None
    can_retry: bool = Field(
        False, description="Declined: POST /v1/orders/{order_id}/retry opens another payment."
    )

    @classmethod
    def of(cls, view: CheckoutView) -> CheckoutOut:
        payment = view.payment
        return cls(
            order_id=view.order_id,
            workflow_id=view.workflow_id,
            status=view.status,
            amount=view.amount,
            currency=view.currency,
            payment=PaymentOut(
                gateway=payment.gateway,
                payment_url=payment.payment_url,
                expires_at=payment.expires_at,
                attempt=payment.attempt,
            )
            if payment
            else None,
            reason=view.reason,
            can_retry=view.can_retry,
        )


class OrderOut(BaseModel):
    order_id: str
    status: OrderStatus
    reason: str | None
    amount: int
    currency: str
    customer_id: str
    gateway: str
    payment_url: str | None
    payment_attempts: int
    expires_at: datetime | None
    refunded_amount: int
    refunds: list[RefundOut] = []
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order, refunds=()) -> OrderOut:
        """From the order row and its refund rows."""
        return cls(
            order_id=order.order_id,
            status=order.status,
            reason=order.status_reason,
            amount=order.amount,
            currency=order.currency,
            customer_id=order.customer_id,
            gateway=order.gateway,
            payment_url=order.payment_url,
            payment_attempts=order.payment_attempts,
            expires_at=order.expires_at,
            refunded_amount=order.refunded_amount,
            refunds=[RefundOut.of(refund) for refund in refunds],
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        None, gt=0, description="Minor units; default: everything not yet refunded."
    )
    reason: _text(500) | None = None  # default: who asked


class RefundOut(BaseModel):
    refund_id: str
    order_id: str
    status: RefundStatus
    amount: int
    currency: str
    reason: str
    failure_reason: str | None
    requested_by: str
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, refund) -> RefundOut:
        """From the refund row."""
        return cls.model_validate(refund, from_attributes=True)


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


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: _text(500)
    decision: Literal["refund", "accept"] = Field(
        "refund", description="accept: only for more than the amount; the excess is refunded"
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: _text(500) = "cancelled by request"
