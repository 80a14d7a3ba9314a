"""The rules about money that need no database: the refund cap, the stray judge, the ledger's
postings, and the errors catalogue as it travels through Temporal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from kassa import errors, ledger
from kassa.contracts import PaymentEvent
from kassa.refund_cap import refund_amount
from kassa.statuses import Caller, OrderStatus, PaymentOutcome, StrayKind
from kassa.strays import stray_kind

NOW = datetime(2026, 11, 30, tzinfo=UTC)
WEEK = timedelta(days=7)


def cap(**given):
    facts = {
        "status": OrderStatus.FULFILLED,
        "caller": Caller.STOREFRONT,
        "captured": 10_000,
        "reserved": 0,
        "requested": None,
        "paid_at": NOW - timedelta(days=1),
        "now": NOW,
        "window": WEEK,
    } | given
    return refund_amount(**facts)


def test_the_cap_is_captured_minus_succeeded_and_pending_refunds():
    assert cap() == 10_000
    assert cap(reserved=2_500) == 7_500
    assert cap(reserved=2_500, requested=7_500) == 7_500
    with pytest.raises(errors.RefundExceedsRemaining) as over:
        cap(reserved=2_500, requested=7_501)
    assert (over.value.status, over.value.field) == (422, "amount")
    with pytest.raises(errors.NothingToRefund):
        cap(reserved=10_000)


@pytest.mark.parametrize(
    ("status", "caller", "ended", "refusal"),
    [
        (OrderStatus.AWAITING_PAYMENT, Caller.STOREFRONT, False, errors.OrderNotRefundable),
        (OrderStatus.PAID, Caller.STOREFRONT, True, errors.OrderNotRefundable),
        (OrderStatus.PAID, Caller.SUPPORT, False, errors.OrderNotRefundable),  # still running
        (OrderStatus.PAID, Caller.SUPPORT, True, None),  # its compensation failed
        (OrderStatus.PAID, Caller.SYSTEM, False, None),  # compensation itself
        (OrderStatus.REFUNDED, Caller.SUPPORT, True, errors.NothingToRefund),
        (OrderStatus.PARTIALLY_REFUNDED, Caller.STOREFRONT, False, None),
    ],
)
def test_who_may_refund_what(status, caller, ended, refusal):
    if refusal is None:
        assert cap(status=status, caller=caller, checkout_ended=ended) == 10_000
    else:
        with pytest.raises(refusal):
            cap(status=status, caller=caller, checkout_ended=ended)


def test_the_window_binds_the_storefront_only():
    long_ago = NOW - timedelta(days=8)
    with pytest.raises(errors.RefundWindowClosed) as late:
        cap(paid_at=long_ago)
    assert late.value.status == 403
    assert cap(paid_at=long_ago, caller=Caller.SUPPORT, window=None) == 10_000


def capture(payment_id: str) -> PaymentEvent:
    return PaymentEvent("sandbox", "e", "ord", payment_id, PaymentOutcome.SUCCEEDED, 100, "CNY")


@pytest.mark.parametrize(
    ("status", "kept", "payment", "kind"),
    [
        (OrderStatus.FULFILLED, "pay_1", "pay_1", None),  # the capture the order kept
        (OrderStatus.REFUNDED, "pay_1", "pay_1", None),
        (OrderStatus.FULFILLED, "pay_1", "pay_2", StrayKind.DOUBLE_PAYMENT),
        (OrderStatus.EXPIRED, "pay_1", "pay_1", StrayKind.LATE_PAYMENT),
        (OrderStatus.CANCELLED, None, "pay_1", StrayKind.LATE_PAYMENT),
        (OrderStatus.FAILED, "pay_1", "pay_1", StrayKind.LATE_PAYMENT),
        (OrderStatus.AWAITING_PAYMENT, "pay_1", "pay_2", None),  # its checkout judges it
        (OrderStatus.ON_HOLD, "pay_1", "pay_2", None),
    ],
)
def test_the_stray_judge(status, kept, payment, kind):
    assert stray_kind(status, kept, capture(payment)) == kind


def test_a_decline_is_never_a_stray():
    declined = PaymentEvent("sandbox", "e", "ord", "pay_1", PaymentOutcome.DECLINED, 100, "CNY")
    assert stray_kind(OrderStatus.EXPIRED, "pay_1", declined) is None


@pytest.mark.parametrize(
    "posting",
    [
        ledger.capture("ord", "sandbox", 19_900, "CNY"),
        ledger.refund("ord", "sandbox", "rf_1", 500, "CNY"),
        ledger.stray_capture("ord", "sandbox", "pay_2", 19_900, "CNY"),
        ledger.stray_refund("ord", "sandbox", "pay_2", 19_900, "CNY"),
    ],
    ids=lambda p: p.kind,
)
def test_every_posting_balances_and_is_keyed_by_what_it_records(posting):
    assert sum(posting.entries.values()) == 0 and 0 not in posting.entries.values()
    assert posting.key.endswith(("ord", "rf_1", "pay_2"))


def test_postings_move_money_between_the_right_accounts():
    assert ledger.capture("o", "sandbox", 100, "CNY").entries == {
        "gateway:sandbox": 100,
        "revenue": -100,
    }
    assert ledger.refund("o", "sandbox", "rf", 40, "CNY").entries == {
        "refunds": 40,
        "gateway:sandbox": -40,
    }
    stray, back = (
        ledger.stray_capture("o", "sandbox", "p", 70, "CNY"),
        ledger.stray_refund("o", "sandbox", "p", 70, "CNY"),
    )
    net = {a: stray.entries.get(a, 0) + back.entries.get(a, 0) for a in stray.entries}
    assert net == {"gateway:sandbox": 0, "unallocated": 0}


def test_an_error_survives_the_trip_through_temporal_by_its_class_name():
    raised = errors.CannotAccept("only more than 99.00 CNY")
    assert isinstance(raised, ApplicationError) and raised.non_retryable
    carried = ApplicationError(raised.message, type=raised.type)  # as the client receives it
    again = errors.from_failure(carried)
    assert type(again) is errors.CannotAccept and again.detail == "only more than 99.00 CNY"
    assert again.problem() == {
        "type": "urn:kassa:problem:cannot-accept",
        "title": "This payment can only be refunded",
        "status": 409,
        "detail": "only more than 99.00 CNY",
        "field": "decision",
    }
    assert errors.from_failure(ApplicationError("boom", type="SomethingElse")) is None


def test_every_error_in_the_catalogue_has_its_own_slug_per_status():
    seen: dict[tuple[int, str], str] = {}
    for name, kind in errors.CATALOGUE.items():
        assert kind.slug and kind.title and 400 <= kind.status <= 599, name
        first = seen.setdefault((kind.status, kind.slug), name)
        assert first == name or issubclass(kind, errors.CATALOGUE[first]), (name, first)
