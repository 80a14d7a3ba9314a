from dataclasses import replace

import pytest

from api.problems import field_path
from kassa import errors
from kassa.contracts import (
    TEMPORAL_CANCEL,
    CancelRequest,
    CheckoutView,
    RefundView,
    ReviewDecision,
)
from kassa.reasons import ReasonCode
from kassa.statuses import Caller, OrderStatus, RefundStatus
from tests.support import new_checkout


def test_the_amount_is_the_sum_of_the_lines_in_minor_units():
    assert new_checkout(amount=1999, quantity=3).amount == 5997


def test_the_lifecycle_has_no_way_back_from_paid():
    assert OrderStatus.PAID in OrderStatus.FULFILLED.comes_from
    for status in OrderStatus:
        if any(before.is_paid for before in status.comes_from):
            assert status.is_paid, f"{status} can follow a paid status but is not paid"


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body", "items", 0, "unit_amount"), "items[0].unit_amount"),
        (("body", "currency"), "currency"),
        (("header", "idempotency-key"), "Idempotency-Key"),
        (("body",), "body"),
    ],
)
def test_validation_errors_name_the_field_as_the_caller_wrote_it(loc, field):
    assert field_path(loc) == field


def test_sandbox_references_name_their_order_and_attempt():
    from gateways.sandbox import order_of_sandbox_reference, sandbox_reference

    assert sandbox_reference("ord_1") == "ord_1"  # the first keeps the order id
    assert sandbox_reference("ord_1", 3) == "ord_1~3"
    for order_id in ("ord_1", "a.b:c-d", "x" * 64):
        for attempt in (1, 2, 10):
            assert order_of_sandbox_reference(sandbox_reference(order_id, attempt)) == order_id


def test_every_reason_code_has_a_short_text_with_no_figures():
    for code in ReasonCode:
        assert code.text.endswith(".") and len(code.text) <= 100, code
        assert not any(c.isdigit() for c in code.text), code


def test_the_storefront_is_told_codes_and_its_own_reasons_only():
    view = CheckoutView("o", "w", OrderStatus.CANCELLED, 100, "CNY", "c", "sandbox")
    noted = replace(view, reason="fraud ring", reason_code=ReasonCode.CANCELLED_BY_SUPPORT)
    assert noted.for_storefront().reason == ReasonCode.CANCELLED_BY_SUPPORT.text
    assert view.for_storefront().reason is None
    refund = RefundView("r", "o", RefundStatus.FAILED, 100, "CNY", "wrong size")
    failed = replace(
        refund, failure_reason="HTTP 500: {...}", failure_code=ReasonCode.REFUND_FAILED
    )
    assert (failed.for_storefront().reason, failed.for_storefront().failure_reason) == (
        "wrong size",
        ReasonCode.REFUND_FAILED.text,
    )
    assert replace(refund, requested_by=Caller.SUPPORT).for_storefront().reason is None


def test_a_cancel_says_who_asked():
    assert CancelRequest("x", "storefront:shop").code == ReasonCode.CANCELLED_BY_STOREFRONT
    assert CancelRequest("x", "support:alice").code == ReasonCode.CANCELLED_BY_SUPPORT
    # A cancellation in Temporal (the UI's Request Cancellation) is support's.
    assert CancelRequest("x", TEMPORAL_CANCEL).code == ReasonCode.CANCELLED_BY_SUPPORT


@pytest.mark.parametrize(
    "who",
    [
        "",
        "storefront",
        "support",
        "support:",
        "temporal",
        "admin:root",
        "support: alice",
        "support:alice\n",
        "support:" + "a" * 65,
        ":alice",
        "support:-alice",
    ],
)
def test_updates_without_an_actor_the_api_would_write_are_refused(who):
    with pytest.raises(errors.ActorRequired) as refused:
        CancelRequest("x", who).check()
    assert (refused.value.status, refused.value.field) == (422, "requested_by")
    with pytest.raises(errors.ActorRequired) as refused:
        ReviewDecision("refund it", who).check()
    assert refused.value.field == "decided_by"


def test_an_update_typed_without_its_actor_is_refused():
    with pytest.raises(errors.ActorRequired):
        CancelRequest().check()
    with pytest.raises(errors.ActorRequired):
        ReviewDecision("refund it").check()


def test_actors_as_the_api_writes_them_pass():
    CancelRequest("buyer left", "storefront:shop-web").check()
    CancelRequest("duplicate order", "support:alice@example.com").check()
    ReviewDecision("refund it", "support:alice").check()
    with pytest.raises(errors.ActorRequired):  # only support decides on a held payment
        ReviewDecision("keep it", "storefront:shop").check()


def test_support_acts_with_a_reason():
    with pytest.raises(errors.ReasonRequired) as refused:
        CancelRequest("  ", "support:alice").check()
    assert (refused.value.status, refused.value.field) == (403, "reason")
    with pytest.raises(errors.ReasonRequired) as refused:
        ReviewDecision("", "support:alice").check()
    assert refused.value.field == "note"
