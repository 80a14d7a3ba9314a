import pytest

from api.problems import field_path
from kassa.statuses import OrderStatus
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
