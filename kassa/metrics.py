"""Kassa's own Prometheus series (prometheus-client). The Temporal SDK serves its own
(`temporal_*`) from the worker's Runtime; these are the business's.

Counted where the effect commits, once: an activity that runs again (a retry, a workflow
task replayed after a crash) finds its effect done and counts nothing. Never from workflow
code, which replays."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kassa.statuses import OrderStatus, RefundStatus, StrayKind

CHECKOUTS = Counter(
    "kassa_checkouts",
    "Checkouts that ended, by outcome (the order's final status) and gateway.",
    ["outcome", "gateway"],
)
TIME_TO_PAY = Histogram(
    "kassa_time_to_pay_seconds",
    "From the order's creation to its payment.",
    ["gateway"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
GATEWAY_CALL = Histogram(
    "kassa_gateway_call_seconds",
    "Calls to a payment gateway, by gateway and call (its _count is every call).",
    ["gateway", "call"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GATEWAY_ERRORS = Counter(
    "kassa_gateway_call_errors",
    "Gateway calls that failed: `rejected` (the gateway refused, for good) or `error` "
    "(no answer, or an unknown outcome: retried).",
    ["gateway", "call", "kind"],
)
REFUNDS = Counter("kassa_refunds", "Refunds that ended, by status (succeeded, failed).", ["status"])
STRAYS_FOUND = Counter(
    "kassa_strays_found",
    "Captures no order keeps (late, double, wrong amount), recorded to be given back.",
    ["gateway", "kind"],
)
PAYMENTS_HELD = Counter(
    "kassa_payments_held", "Payments held for support's review (another amount).", ["gateway"]
)
WEBHOOK_DELIVERIES = Counter(
    "kassa_webhook_deliveries",
    "Deliveries of storefront webhooks: delivered, failed (retried), or skipped (no URL).",
    ["result"],
)
# Sampled from the database by each worker (several workers report the same: take max).
HELD_WAITING = Gauge("kassa_held_payments_waiting", "Orders on hold for support now.")
HELD_OLDEST = Gauge(
    "kassa_held_payment_oldest_seconds", "How long the oldest held order has waited."
)
STUCK_CHECKOUTS = Gauge(
    "kassa_stuck_checkouts",
    "Checkouts still unpaid and not ended well after their payment window closed.",
)


def known_gateway(gateway: str) -> None:
    """Every series of a gateway, at zero until it counts: a dashboard shows 0, not "no
    data", and an alert's rate() has something to start from."""
    for status in OrderStatus:
        if status.is_final:
            CHECKOUTS.labels(str(status), gateway)
    for kind in StrayKind:
        STRAYS_FOUND.labels(gateway, str(kind))
    PAYMENTS_HELD.labels(gateway)


for _status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
    REFUNDS.labels(str(_status))
for _result in ("delivered", "failed", "skipped"):
    WEBHOOK_DELIVERIES.labels(_result)
