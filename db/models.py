"""The PostgreSQL schema (migrations/ holds its history; alembic applies it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kassa.reasons import ReasonCode
from kassa.statuses import Caller, OrderStatus, PaymentOutcome, RefundStatus, StrayKind


class Base(DeclarativeBase):
    pass


def _status(enum: type, length: int = 32):
    """A status column typed with its enum, stored as its value in a plain VARCHAR."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("amount > 0", name="orders_amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount",
            name="orders_refunds_within_amount",
        ),
    )

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[OrderStatus] = mapped_column(_status(OrderStatus))
    # Why: the code the storefront is told, and the detail, support's.
    reason_code: Mapped[ReasonCode | None] = mapped_column(_status(ReasonCode))
    status_reason: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, server_default="0")
    items: Mapped[list] = mapped_column(JSONB)
    gateway: Mapped[str] = mapped_column(String(32))
    # The latest attempt's payment id known at creation; once paid, the capture kept.
    gateway_payment_id: Mapped[str | None] = mapped_column(String(128))
    # Gateway payments opened for the order: more than one after a retry (gateway_payments).
    payment_attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    payment_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    return_url: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When risk control let the order go ahead: the velocity limit counts these.
    risk_approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()


class GatewayPayment(Base):
    """One gateway payment of an order: the attempt, and the merchant reference its gateway
    knows it by. Each adapter derives its own gateway-safe reference (gateways differ in
    what they allow); callbacks, reconciliation and refunds look it up here instead of
    parsing it. Written before the gateway is called, so a callback that overtakes the
    call's answer finds its order."""

    __tablename__ = "gateway_payments"
    __table_args__ = (UniqueConstraint("order_id", "attempt"),)

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = _now_column()


class IdempotencyKey(Base):
    """The durable guard for POST retries: one key, one request body, one order."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[str | None] = mapped_column(String(64))  # set for refund requests
    created_at: Mapped[datetime] = _now_column()


class PaymentEventRecord(Base):
    """Inbox of verified gateway callbacks, one row per gateway event id."""

    __tablename__ = "payment_events"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[PaymentOutcome] = mapped_column(_status(PaymentOutcome))
    payload: Mapped[dict] = mapped_column(JSONB)
    received_at: Mapped[datetime] = _now_column()


class Entitlement(Base):
    """Customer X may access SKU Y, because of order Z."""

    __tablename__ = "entitlements"
    __table_args__ = (UniqueConstraint("order_id", "sku"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"))
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    sku: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = _now_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StorefrontWebhook(Base):
    """Outbox of webhooks sent to the storefront; the event id is what the storefront dedups on."""

    __tablename__ = "storefront_webhooks"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now_column()


class Refund(Base):
    """One refund request; its amount is reserved against the capture while pending."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="refunds_amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="refunds_status_known"
        ),
    )

    refund_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[RefundStatus] = mapped_column(_status(RefundStatus))
    reason: Mapped[str] = mapped_column(Text)
    # Why it failed: the code the storefront is told, and the detail, support's.
    failure_code: Mapped[ReasonCode | None] = mapped_column(_status(ReasonCode))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[Caller] = mapped_column(_status(Caller))
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerTransaction(Base):
    """One money movement (资金流水). Append-only; its entries sum to zero per currency,
    which the database enforces when the transaction commits."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)  # a retried post is a no-op
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = _now_column()


class LedgerEntry(Base):
    """A signed amount on one account: debits positive, credits negative."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount <> 0", name="ledger_entries_amount_nonzero"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class Invoice(Base):
    """The receipt for a fulfilled order (one per order); voided, never deleted."""

    __tablename__ = "invoices"

    invoice_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), unique=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # issued | void
    issued_at: Mapped[datetime] = _now_column()
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StrayCapture(Base):
    """Money a gateway captured that no order keeps (a late or a second payment); it is
    refunded by its own refund workflow."""

    __tablename__ = "stray_captures"

    payment_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    gateway: Mapped[str] = mapped_column(String(32))
    kind: Mapped[StrayKind] = mapped_column(_status(StrayKind))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[RefundStatus] = mapped_column(_status(RefundStatus, 16))  # of its refund
    created_at: Mapped[datetime] = _now_column()
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """One support action on an order (docs/security.md): who, what, why, the order's status
    before and after. Append-only: db/audit.py only inserts and reads, and a trigger
    refuses UPDATE and DELETE (migrations/versions/0005_audit_log.py)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # One row per action however often its request is repeated: "cancel:<order>",
    # "review:<order>", "refund:<refund id>".
    action_key: Mapped[str] = mapped_column(String(160), unique=True)
    actor: Mapped[str] = mapped_column(String(100))  # role:holder, as the API names the key
    action: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    before: Mapped[dict] = mapped_column(JSONB)
    after: Mapped[dict] = mapped_column(JSONB)
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now_column()
