"""The payment's rules without Temporal: one table row per case of docs/hard-cases.md that
the checkout decides (the others are the API's, the gateway adapter's or the crash runs')."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kassa import errors
from kassa.contracts import CancelRequest, PaymentEvent, PaymentSession, ReviewDecision
from kassa.statuses import OrderStatus, PaymentOutcome
from workflows.payment import Payment, Verdict

PAID, DECLINED = PaymentOutcome.SUCCEEDED, PaymentOutcome.DECLINED
AMOUNT = 9900


def opened(attempt: int = 1) -> PaymentSession:
    return PaymentSession("sandbox", f"pay_{attempt}", "http://pay", datetime.now(UTC), attempt)


def word(outcome, n=1, *, attempt=1, payment="pay_1", amount=AMOUNT, currency="CNY"):
    return PaymentEvent("sandbox", f"evt_{n}", "ord", payment, outcome, amount, currency, attempt)


def payment(max_attempts: int = 3) -> Payment:
    p = Payment(AMOUNT, "CNY", max_attempts)
    p.session = opened()
    return p


def declined_then_retried(p: Payment) -> Payment:
    """Attempt 1 declined, the buyer asked again, its close found nothing, attempt 2 open."""
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.ask_retry()
    assert p.end_retry_wait()
    p.closed_at_gateway(None)
    p.next_attempt()
    p.session = opened(2)
    p.retry_opened()
    return p


def hear(p: Payment, event: PaymentEvent) -> None:
    """A callback as the checkout hears it, the gateway confirming what it says."""
    if p.first_hearing(event):
        p.take(event)


def strays(p: Payment) -> list[str]:
    return sorted(e.payment_id for e in p.take_strays())


# Each row: the case (as docs/hard-cases.md names it), what the gateway says in order, the
# verdict, and the captures the order does not keep.
CASES = [
    ("paid", [word(PAID)], Verdict.PAID, []),
    ("duplicate callbacks", [word(PAID, 1), word(PAID, 1), word(PAID, 2)], Verdict.PAID, []),
    ("reordered: declined after succeeded", [word(PAID), word(DECLINED, 2)], Verdict.PAID, []),
    ("declined", [word(DECLINED)], Verdict.DECLINED, []),
    ("a pending word decides nothing", [word(PaymentOutcome.PENDING)], Verdict.UNDECIDED, []),
    (
        "another amount is held",
        [word(PAID, amount=100)],
        Verdict.HELD,
        [],
    ),
    ("another currency is held", [word(PAID, currency="USD")], Verdict.HELD, []),
    (
        "double payment: a second capture is a stray",
        [word(PAID, 1), word(PAID, 2, payment="pay_1b")],
        Verdict.PAID,
        ["pay_1b"],
    ),
    (
        "a capture of another attempt's payment is a stray",
        [word(PAID, attempt=2, payment="pay_other")],
        Verdict.UNDECIDED,
        ["pay_other"],
    ),
    (
        "a capture of another payment under the same reference is a stray",
        [word(PAID, payment="pay_other")],
        Verdict.UNDECIDED,
        ["pay_other"],
    ),
    (
        "a capture after a decline, no retry offered, is a stray",
        [word(DECLINED, 1), word(PAID, 2)],
        Verdict.DECLINED,
        ["pay_1"],
    ),
]


@pytest.mark.parametrize(
    ("words", "verdict", "stray"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_words_from_the_gateway(words, verdict, stray):
    p = payment()
    for event in words:
        hear(p, event)
    assert p.verdict == verdict
    assert strays(p) == stray


def test_a_callback_before_the_payment_call_returned_counts():
    p = Payment(AMOUNT, "CNY", 1)  # no session yet: the page is not open
    hear(p, word(PAID))
    p.session = opened()
    assert p.verdict == Verdict.PAID and p.waiting_is_over()


def test_the_same_event_id_is_heard_once():
    p = payment()
    hear(p, word(DECLINED, 7))
    p.take(word(PAID, 8))  # asked, not heard: a capture of the declined page
    hear(p, word(DECLINED, 7))  # the decline redelivered changes nothing
    assert p.events_seen == {"evt_7"} and strays(p) == ["pay_1"]


def test_close_finds_nothing_and_later_captures_are_strays():
    p = payment()
    p.closed_at_gateway(None)
    assert p.verdict == Verdict.CLOSED
    p.take(word(PAID))  # paid after the window closed: a late payment
    assert p.verdict == Verdict.CLOSED and strays(p) == ["pay_1"]


def test_close_finds_the_buyer_paid_first():
    p = payment()
    p.closed_at_gateway(word(PAID, payment="pay_1"))
    assert p.verdict == Verdict.PAID


def test_close_finds_another_amount_and_holds_it():
    p = payment()
    p.cancel = CancelRequest("changed mind")
    p.closed_at_gateway(word(PAID, amount=100))
    assert p.verdict == Verdict.HELD


def test_a_capture_of_the_declined_page_outranks_the_decline_while_a_retry_is_offered():
    p = payment()
    p.take(word(DECLINED))
    assert p.may_retry()
    p.awaiting_retry = True
    p.take(word(PAID, 2))
    assert p.retry_wait_is_over() and not p.end_retry_wait()
    assert p.verdict == Verdict.PAID and strays(p) == []


def test_the_declined_payments_close_finding_a_capture_pays_the_order_without_a_new_one():
    p = payment()
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.ask_retry()
    assert p.end_retry_wait()
    p.closed_at_gateway(word(PAID))
    assert p.captured and p.verdict == Verdict.PAID


def test_after_a_retry_only_the_current_attempts_capture_is_kept():
    p = declined_then_retried(payment())
    assert (p.attempt, p.verdict, p.can_retry) == (2, Verdict.UNDECIDED, False)
    p.take(word(PAID, 5, attempt=1, payment="pay_1"))  # the declined page, paid late
    p.take(word(PAID, 6, attempt=2, payment="pay_2"))
    assert p.verdict == Verdict.PAID and strays(p) == ["pay_1"]


def test_attempts_are_bounded():
    p = payment(max_attempts=1)
    p.take(word(DECLINED))
    assert not p.may_retry()
    with pytest.raises(errors.RetryNotAllowed):
        p.check_retry(OrderStatus.AWAITING_PAYMENT)


def test_a_second_retry_request_joins_the_first():
    p = payment()
    p.take(word(DECLINED))
    p.awaiting_retry = True
    assert p.can_retry
    assert p.ask_retry() == p.ask_retry() == 2
    assert not p.can_retry


def test_a_cancel_during_the_retry_wait_closes_the_declined_payment_first():
    p = payment()
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.cancel = CancelRequest()
    assert p.retry_wait_is_over() and not p.end_retry_wait()
    assert p.verdict == Verdict.UNDECIDED  # so the checkout closes it, then cancels


def test_no_retry_within_the_window_fails_the_order_after_the_close():
    p = payment()
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.closed_at_gateway(None)  # the window closed: the checkout closes it
    assert not p.end_retry_wait() and p.verdict == Verdict.DECLINED


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        (lambda p: p.take(word(PAID, amount=100)), errors.OrderOnHold),
        (lambda p: p.take(word(PAID)), errors.OrderAlreadyPaid),
    ],
)
def test_cancel_is_refused_once_paid_or_held(setup, refusal):
    p = payment()
    setup(p)
    with pytest.raises(refusal) as refused:
        p.check_cancel(OrderStatus.AWAITING_PAYMENT)
    assert refused.value.status == 409 and refused.value.slug == "order-not-cancellable"


def test_cancel_is_refused_once_ended():
    with pytest.raises(errors.OrderClosed):
        payment().check_cancel(OrderStatus.EXPIRED)


def test_review_accepts_only_more_than_the_amount_in_the_orders_currency():
    p = payment()
    p.take(word(PAID, amount=AMOUNT + 100))
    p.check_review(ReviewDecision("ok", accept=True), OrderStatus.ON_HOLD)
    p.accept_held()
    assert p.verdict == Verdict.PAID

    less = payment()
    less.take(word(PAID, amount=100))
    with pytest.raises(errors.CannotAccept):
        less.check_review(ReviewDecision("no", accept=True), OrderStatus.ON_HOLD)
    less.check_review(ReviewDecision("refund it"), OrderStatus.ON_HOLD)
    with pytest.raises(errors.NotOnHold):
        less.check_review(ReviewDecision("x"), OrderStatus.FULFILLED)


def test_a_close_that_finds_another_attempts_capture_closes_the_payment():
    p = payment()
    p.closed_at_gateway(word(PAID, attempt=2, payment="pay_other"))
    assert p.verdict == Verdict.CLOSED and strays(p) == ["pay_other"]


def test_where_the_gateway_names_no_payment_at_creation_the_capture_id_tells_them_apart():
    p = Payment(AMOUNT, "CNY", 3)
    p.session = PaymentSession("alipay", None, None, datetime.now(UTC), qr_code="https://qr")
    hear(p, word(PAID, 1, payment="trade_1"))
    hear(p, word(PAID, 2, payment="trade_1"))  # the same capture, notified again
    hear(p, word(PAID, 3, payment="trade_2"))  # another capture under the same reference
    assert p.kept == "trade_1" and strays(p) == ["trade_2"]


def test_a_second_capture_while_a_retry_is_offered_does_not_replace_the_first():
    p = Payment(AMOUNT, "CNY", 3)
    p.session = PaymentSession("wechat", None, None, datetime.now(UTC), qr_code="weixin://x")
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.take(word(PAID, 2, payment="T1"))
    p.take(word(PAID, 3, payment="T2"))
    assert p.kept == "T1" and strays(p) == ["T2"]


def test_a_close_finding_another_capture_leaves_the_decline_standing():
    p = payment()
    p.take(word(DECLINED))
    p.awaiting_retry = True
    p.closed_at_gateway(word(PAID, attempt=2, payment="pay_other"))  # the window closed
    assert not p.end_retry_wait() and p.verdict == Verdict.DECLINED
    assert strays(p) == ["pay_other"]
