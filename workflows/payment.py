"""The rules of one order's payment, pure: no Temporal, no I/O, so every rule is tested by
itself (tests/unit/test_payment.py, a row for each case in docs/hard-cases.md).

The checkout workflow holds one `Payment` and tells it what happens: every word from the
gateway (a callback, a status check, what a close found), the buyer's and support's
requests, a new attempt opened. The payment answers what the checkout asks: is it decided,
how, may the buyer retry, which captures does the order not keep.

The rules:
- A callback is only a reason to ask the gateway; its answer is the word that counts.
- The first decisive word (captured or declined) about the current attempt's payment counts;
  repeats and contrary words change nothing. A word is about the current attempt when it
  names the attempt's merchant reference and, where the gateway named the payment when it
  was opened, that payment; a second capture is told apart by the gateway's capture id.
- A capture of another amount or currency is held for support.
- While the buyer may retry after a decline, a capture of the declined payment outranks the
  decline (the buyer paid on the same page after all).
- Money the order does not keep (another attempt's capture, a second capture, a capture after
  the payment was closed unpaid) is a stray, given back by its own refund.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kassa.contracts import CancelRequest, PaymentEvent, PaymentSession, ReviewDecision
from kassa.errors import (
    CannotAccept,
    NotOnHold,
    OrderAlreadyPaid,
    OrderClosed,
    OrderOnHold,
    RetryNotAllowed,
)
from kassa.money import format_amount
from kassa.statuses import OrderStatus, PaymentOutcome

DECISIVE = (PaymentOutcome.SUCCEEDED, PaymentOutcome.DECLINED)


class Verdict(StrEnum):
    """How the payment stands once the checkout stops waiting for it."""

    UNDECIDED = "undecided"  # no decisive word yet: close it at the gateway before ending
    PAID = "paid"
    HELD = "held"  # paid, but not what the order asked: support decides
    DECLINED = "declined"
    CLOSED = "closed"  # closed unpaid at the gateway: nothing more can be captured


@dataclass
class Payment:
    amount: int
    currency: str
    max_attempts: int
    attempt: int = 1  # which of the order's gateway payments is current
    session: PaymentSession | None = None  # the current attempt's page, once open
    outcome: PaymentOutcome | None = None  # the decisive word about the current attempt
    kept: str | None = None  # the gateway's id of the capture the order keeps (or holds)
    held: PaymentEvent | None = None
    closed: bool = False  # the current attempt was closed unpaid
    awaiting_retry: bool = False  # declined; the buyer may open another payment
    retry: int | None = None  # the attempt the buyer asked for, until it is open
    cancel: CancelRequest | None = None
    review: ReviewDecision | None = None
    strays: dict[str, PaymentEvent] = field(default_factory=dict)  # by gateway payment id
    events_seen: set[str] = field(default_factory=set)

    # ---- words from the gateway -------------------------------------------------------------

    def first_hearing(self, event: PaymentEvent) -> bool:
        """A callback is worth asking the gateway about (it proves nothing by itself: the
        checkout takes the gateway's answer, not the callback): once per event id, and only
        about one of the order's possible attempts."""
        if event.event_id in self.events_seen or not 1 <= event.attempt <= self.max_attempts:
            return False
        self.events_seen.add(event.event_id)
        return True

    def undecided_hearing(self, event: PaymentEvent) -> None:
        """The gateway's answer to a callback decided nothing (pending, unknown, unanswered):
        the callback's redelivery may ask again. A forged signal that borrowed the event id
        of a callback still to come must not make the real one be ignored."""
        self.events_seen.discard(event.event_id)

    def take(self, event: PaymentEvent) -> None:
        """One word from the gateway, by callback or when asked."""
        if event.outcome not in DECISIVE:
            return
        captured = event.outcome == PaymentOutcome.SUCCEEDED
        current = self._is_current(event)
        if current and self._open_to(event):
            if captured and (event.amount, event.currency) != (self.amount, self.currency):
                self.held = event
            else:
                self.outcome = event.outcome
            if captured:
                self.kept = event.payment_id
                self.strays.pop(event.payment_id, None)  # kept after all (a decline's close)
        elif captured and not (current and event.payment_id == self.kept):
            self.strays.setdefault(event.payment_id, event)

    def closed_at_gateway(self, captured: PaymentEvent | None) -> None:
        """The current payment was closed: unpaid (None), or the buyer paid first, and that
        capture is judged like any word (a decline before it was not the last word). Unless
        the order keeps what the close found, nothing more can be captured on it."""
        before = self.outcome
        if captured is not None:
            self.outcome = None
            self.take(captured)
        if not self.captured:  # a capture the order does not keep leaves the decline standing
            self.outcome, self.closed = before, True

    def _is_current(self, event: PaymentEvent) -> bool:
        """About the current attempt's payment: its reference (the attempt), and where the
        gateway named the payment at creation (the sandbox does, Alipay does not), that one."""
        known = self.session.payment_id if self.session else None
        return event.attempt == self.attempt and known in (None, event.payment_id)

    def _open_to(self, event: PaymentEvent) -> bool:
        # A capture outranks a decline the buyer may retry (paid on the same page after all);
        # nothing outranks a capture.
        overrules = (
            self.awaiting_retry
            and self.outcome == PaymentOutcome.DECLINED
            and event.outcome == PaymentOutcome.SUCCEEDED
        )
        return (self.outcome is None or overrules) and self.held is None and not self.closed

    # ---- what the checkout asks ---------------------------------------------------------------

    @property
    def captured(self) -> bool:
        """The current payment was captured (of the amount asked, or held)."""
        return self.outcome == PaymentOutcome.SUCCEEDED or self.held is not None

    @property
    def verdict(self) -> Verdict:
        if self.held is not None:
            return Verdict.HELD
        if self.outcome == PaymentOutcome.SUCCEEDED:
            return Verdict.PAID
        if self.outcome == PaymentOutcome.DECLINED:
            return Verdict.DECLINED
        return Verdict.CLOSED if self.closed else Verdict.UNDECIDED

    def waiting_is_over(self) -> bool:
        """Stop waiting for the buyer: the gateway decided, or a cancel came."""
        return self.outcome is not None or self.held is not None or self.cancel is not None

    def may_retry(self) -> bool:
        """Declined, not cancelled, and attempts left: offer the buyer another payment."""
        return (
            self.outcome == PaymentOutcome.DECLINED
            and self.cancel is None
            and self.held is None
            and self.attempt < self.max_attempts
        )

    def ask_retry(self) -> int:
        """The buyer asks for another payment; a second ask while it opens joins the first.
        Returns the attempt that will answer it."""
        if self.retry is None:
            self.retry = self.attempt + 1
        return self.retry

    def retry_wait_is_over(self) -> bool:
        return (
            self.retry is not None
            or self.cancel is not None
            or self.outcome != PaymentOutcome.DECLINED  # paid on the same page after all
            or self.held is not None
        )

    def end_retry_wait(self) -> bool:
        """The wait for a retry is over: True if the buyer asked for another payment. On a
        cancel the decline is forgotten, so the declined payment is closed like any unpaid
        one before the order is cancelled (or paid, if the close finds it captured)."""
        self.awaiting_retry = False
        if self.outcome != PaymentOutcome.DECLINED or self.held is not None:
            return False  # paid (or held) on this attempt after all
        if self.cancel is not None:
            self.outcome = None
            return False
        return self.retry is not None

    def next_attempt(self) -> None:
        """The declined payment is closed unpaid: the attempt asked for is current now."""
        self.attempt, self.session, self.outcome, self.kept = self.retry, None, None, None
        self.closed = False

    def retry_opened(self) -> None:
        self.retry = None

    def accept_held(self) -> None:
        """Support keeps a held payment of more than the amount (the excess goes back)."""
        self.held, self.outcome = None, PaymentOutcome.SUCCEEDED

    @property
    def decline_note(self) -> str | None:
        """What the order's reason says while a decline stands."""
        if self.outcome != PaymentOutcome.DECLINED:
            return None
        return f"declined by the gateway (attempt {self.attempt} of {self.max_attempts})"

    @property
    def can_retry(self) -> bool:
        """What the storefront is told: the buyer may ask for another payment now."""
        return self.awaiting_retry and self.retry is None

    def take_strays(self) -> list[PaymentEvent]:
        """The captures the order does not keep, each once."""
        strays, self.strays = list(self.strays.values()), {}
        return strays

    # ---- requests: each refused with the catalogue's error when it does not apply ------------

    def check_cancel(self, status: OrderStatus) -> None:
        if self.held is not None:
            raise OrderOnHold("the payment is held for support")
        if status.is_paid or self.outcome == PaymentOutcome.SUCCEEDED:
            raise OrderAlreadyPaid("the order is already paid")
        if status.is_final:
            raise OrderClosed(f"the order is already {status}")

    def check_retry(self, status: OrderStatus) -> None:
        if self.retry is None and not self.awaiting_retry:
            raise RetryNotAllowed(
                f"the order is {status} and its payment is not declined, or no attempt is "
                f"left ({self.attempt} of {self.max_attempts} used)"
            )

    def check_review(self, decision: ReviewDecision, status: OrderStatus) -> None:
        if status != OrderStatus.ON_HOLD:
            raise NotOnHold(f"the order is {status}, not on hold")
        held = self.held
        if decision.accept and (held.currency != self.currency or held.amount < self.amount):
            raise CannotAccept(
                f"only a payment of more than {format_amount(self.amount, self.currency)} can "
                f"be accepted (the excess is refunded); "
                f"{format_amount(held.amount, held.currency)} can only be refunded"
            )
