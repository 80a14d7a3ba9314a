"""Ids derived from business ids, so every retry, report and restart finds the same thing."""

from __future__ import annotations

import hashlib

ORDER_ID_MAX_LENGTH = 64


def checkout_workflow_id(order_id: str) -> str:
    return f"checkout-{order_id}"


def refund_workflow_id(refund_id: str) -> str:
    return f"refund-{refund_id}"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stray_refund_id(payment_id: str) -> str:
    """The one refund of a capture no order keeps: every report of it finds the same one."""
    return f"rf_stray_{_short(payment_id)}"


def compensation_refund_id(order_id: str) -> str:
    """The one refund that undoes a checkout; short whatever the order id's length."""
    return f"rf_comp_{_short(order_id)}"


def invoice_id(order_id: str) -> str:
    return f"inv_{order_id}"
