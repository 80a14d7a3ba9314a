"""Kassa's errors, in one catalogue. Each names its problem type (`urn:kassa:problem:<slug>`),
its HTTP status and title, and the request field to blame when there is one.

They are Temporal `ApplicationError`s whose type is the class name, so a workflow or an
activity raises them by name, Temporal carries them to the client, `from_failure` makes the
same class again there, and the API's one exception handler answers with problem+json. No
string is shared between the two sides but the class name itself. All are permanent
(non-retryable): retrying cannot change the answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError, FailureError

PROBLEM_TYPE = "urn:kassa:problem:"


class KassaError(ApplicationError):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Something went wrong on our side"
    blame: ClassVar[str | None] = None  # the request field to blame, by default
    retry_after: ClassVar[int | None] = None  # seconds, for the 503s: asking again is safe

    def __init__(self, detail: str | None = None, *, field: str | None = None, **extra: Any):
        super().__init__(detail or self.title, type=type(self).__name__, non_retryable=True)
        self.detail = detail
        self.field = field or self.blame
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        return {
            "type": PROBLEM_TYPE + self.slug,
            "title": self.title,
            "status": self.status,
            **({"detail": self.detail} if self.detail else {}),
            **({"field": self.field} if self.field else {}),
            **self.extra,
        }

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else None


def from_failure(err: BaseException | None) -> KassaError | None:
    """The catalogue's error a Temporal failure carries (a workflow's or an update's), or
    None when it carries none of them."""
    while err is not None:
        if isinstance(err, KassaError):
            return err
        if isinstance(err, ApplicationError) and (kind := CATALOGUE.get(err.type or "")):
            return kind(err.message)
        err = err.cause if isinstance(err, FailureError) else None
    return None


# ---- the request itself ----------------------------------------------------------------------


class ValidationFailed(KassaError):
    """Every offending field is listed under `errors`; `field` names the first."""

    status, slug = 422, "validation-error"
    title = "The request is not valid"


class MalformedJson(KassaError):
    status, slug, blame = 400, "malformed-json", "body"
    title = "The request body is not valid JSON"


class BodyTooLarge(KassaError):
    status, slug, blame = 413, "body-too-large", "body"
    title = "The request body is too large"


class NotFound(KassaError):
    status, slug = 404, "not-found"
    title = "Not Found"


class MethodNotAllowed(KassaError):
    status, slug = 405, "method-not-allowed"
    title = "Method Not Allowed"


# ---- the caller ----------------------------------------------------------------------------


class Unauthorized(KassaError):
    status, slug, blame = 401, "unauthorized", "Authorization"
    title = "A valid API key is required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class SupportOnly(KassaError):
    status, slug, blame = 403, "support-only", "Authorization"
    title = "Only the support key may do this"


class RateLimited(KassaError):
    """Too many requests from one API key (or, for gateway callbacks, from one address):
    `limit` says the limit, `Retry-After` when the next request is taken."""

    status, slug, retry_after = 429, "rate-limited", 1
    title = "Too many requests; slow down"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None, **extra):
        super().__init__(detail, **extra)
        if retry_after is not None:
            self.retry_after = max(1, retry_after)


class IdempotencyKeyRequired(KassaError):
    status, slug, blame = 400, "idempotency-key-required", "Idempotency-Key"
    title = "An Idempotency-Key header of 1 to 255 characters is required"


class IdempotencyKeyReused(KassaError):
    status, slug, blame = 422, "idempotency-key-reused", "Idempotency-Key"
    title = "This Idempotency-Key was used with a different request"


# ---- what the request names ----------------------------------------------------------------


class OrderNotFound(KassaError):
    status, slug, blame = 404, "order-not-found", "order_id"
    title = "No such order"


class RefundNotFound(KassaError):
    status, slug, blame = 404, "refund-not-found", "refund_id"
    title = "No such refund"


class LedgerTransactionNotFound(KassaError):
    """A ledger page asked to start after a transaction the order does not have."""

    status, slug, blame = 404, "ledger-transaction-not-found", "starting_after"
    title = "No such ledger transaction of this order"


class WebhookNotFound(KassaError):
    status, slug, blame = 404, "webhook-not-found", "event_id"
    title = "No such webhook of this order"


class UnknownGateway(KassaError):
    status, slug, blame = 404, "unknown-gateway", "gateway"
    title = "No such gateway"


class OrderIdConflict(KassaError):
    status, slug, blame = 409, "order-id-conflict", "order_id"
    title = "This order id is taken by another checkout"


# ---- the checkout's answers (raised by CheckoutWorkflow's update validators) ----------------


class OrderNotCancellable(KassaError):
    status, slug, blame = 409, "order-not-cancellable", "order_id"
    title = "The order can no longer be cancelled"


class OrderAlreadyPaid(OrderNotCancellable):
    title = "The order is already paid"


class OrderClosed(OrderNotCancellable):
    title = "The order has already ended"


class OrderOnHold(OrderNotCancellable):
    title = "The payment is held for support"


class ActorRequired(KassaError):
    """A cancel or a review that does not say who asked the way the API writes it ("support:
    alice"): typed by hand in the Temporal UI, past the API's key check. Refused."""

    status, slug, blame = 422, "actor-required", "requested_by"
    title = "The request must name its actor as role:holder"


class ReasonRequired(KassaError):
    """Support acts with a reason (a cancel's reason, a review's note) for the record. A
    403, like the refund window: the body is valid for the contract (the storefront may
    leave the reason out), but this caller may not act without one."""

    status, slug, blame = 403, "reason-required", "reason"
    title = "Support's actions need a reason"


class CheckoutEnded(KassaError):
    """The checkout ended (failed, for support to see) before it answered the request."""

    status, slug, blame = 409, "checkout-ended", "order_id"
    title = "The checkout ended before it answered"


class RetryNotAllowed(KassaError):
    status, slug, blame = 409, "retry-not-allowed", "order_id"
    title = "Nothing to retry"


class NotOnHold(KassaError):
    status, slug, blame = 409, "order-not-on-hold", "order_id"
    title = "The order is not held for review"


class CannotAccept(KassaError):
    status, slug, blame = 409, "cannot-accept", "decision"
    title = "This payment can only be refunded"


# ---- refunds ---------------------------------------------------------------------------------


class RefundRefused(KassaError):
    """A refund request that must not go ahead (the subclasses say why)."""

    status, slug, blame = 409, "refund-refused", "order_id"
    title = "The refund is refused"


class NothingToRefund(RefundRefused):
    slug = "nothing-to-refund"
    title = "Nothing is left to refund"


class OrderNotRefundable(RefundRefused):
    slug = "order-not-refundable"
    title = "Only paid orders can be refunded"


class RefundWindowClosed(RefundRefused):
    status, slug = 403, "refund-window-closed"
    title = "The refund window is over; support can refund later"


class TooManyRefunds(RefundRefused):
    """The order has had as many refunds as one order may (`max_refunds`, the setting
    KASSA_MAX_REFUNDS_PER_ORDER): every refund asked for counts, failed ones too."""

    slug = "too-many-refunds"
    title = "The order has had as many refunds as it may"


class RefundExceedsRemaining(RefundRefused):
    status, slug, blame = 422, "refund-exceeds-remaining", "amount"
    title = "The amount is more than can still be refunded"


# ---- gateway callbacks -----------------------------------------------------------------------


class InvalidSignature(KassaError):
    """A callback whose signature or timestamp does not check out."""

    status, slug, blame = 401, "invalid-signature", "signature"
    title = "The callback's signature does not verify"


class MalformedCallback(KassaError):
    """A correctly signed callback whose body Kassa cannot read."""

    status, slug, blame = 400, "malformed-callback", "body"
    title = "The callback's body is not what the gateway's protocol says"


# ---- not answered yet: the same request again is safe ---------------------------------------


class TemporalUnavailable(KassaError):
    status, slug, retry_after = 503, "temporal-unavailable", 2
    title = "Try again later"


class CheckoutPending(KassaError):
    status, slug, retry_after = 503, "checkout-pending", 2
    title = "The payment page is not ready yet; retry with the same Idempotency-Key"


class CancelPending(KassaError):
    status, slug, retry_after = 503, "cancel-pending", 2
    title = "The cancel is not finished yet; retry"


class RetryPending(KassaError):
    status, slug, retry_after = 503, "retry-pending", 2
    title = "The retry is not finished yet; retry"


class ReviewPending(KassaError):
    status, slug, retry_after = 503, "review-pending", 2
    title = "The decision is not finished yet; retry"


class RefundNotStarted(KassaError):
    status, slug, retry_after = 503, "refund-not-started", 2
    title = "Retry with the same Idempotency-Key"


class CheckoutFailed(KassaError):
    status, slug = 502, "checkout-failed"
    title = "The checkout could not start"


# ---- inside the pipeline: failures support sees in the Temporal UI ---------------------------


class GatewayRejected(KassaError):
    """The gateway refused the request for good (bad parameters, unknown payment)."""

    slug, title = "gateway-rejected", "The gateway refused the request"


class IllegalStatusTransition(KassaError):
    slug, title = "illegal-status-transition", "The order cannot move to that status"


class RefundStateConflict(KassaError):
    slug, title = "refund-state-conflict", "Money moved for a refund written off here"


class CheckoutNotSealed(KassaError):
    """A checkout whose input does not carry the API's seal (started by hand in Temporal, or
    changed after the API sealed it): no order is created, nothing reaches the gateway."""

    slug, title = "checkout-not-sealed", "Kassa did not start this checkout"


class RefundNotReserved(KassaError):
    """A refund workflow whose refund Kassa never reserved (started by hand, from outside
    Kassa's own code paths), or whose input differs from the reservation: refused, so
    nothing but Kassa moves money out."""

    slug, title = "refund-not-reserved", "No reservation matches this refund"


class DatabaseRefused(KassaError):
    slug, title = "database-refused", "The database refused the data"


class CompensationFailed(KassaError):
    slug, title = "compensation-failed", "The compensating refund failed"


class HeldRefundFailed(KassaError):
    slug, title = "held-refund-failed", "The refund of a held payment failed"


class ExcessRefundFailed(KassaError):
    slug, title = "excess-refund-failed", "The refund of an accepted excess failed"


def _catalogue(base: type[KassaError]) -> dict[str, type[KassaError]]:
    found = {}
    for kind in base.__subclasses__():
        found[kind.__name__] = kind
        found |= _catalogue(kind)
    return found


CATALOGUE: dict[str, type[KassaError]] = _catalogue(KassaError)
