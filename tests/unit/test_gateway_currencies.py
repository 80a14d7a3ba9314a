"""A checkout names a currency its gateway takes, or it is refused before anything starts
(422 naming `currency`). The real gateways (Alipay, WeChat Pay) take CNY only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.routers.checkouts import _check_bounds
from api.schemas import CheckoutIn
from kassa import errors
from kassa.settings import Settings

GATEWAYS = {
    "sandbox": SimpleNamespace(currencies=None),
    "cny-only": SimpleNamespace(currencies=frozenset({"CNY"})),
}


def body(gateway: str, currency: str) -> CheckoutIn:
    return CheckoutIn(
        customer_id="cus_1",
        currency=currency,
        gateway=gateway,
        items=[{"sku": "s", "title": "t", "unit_amount": 100, "quantity": 1}],
    )


@pytest.mark.parametrize(
    ("gateway", "currency"), [("sandbox", "USD"), ("cny-only", "CNY"), ("sandbox", "JPY")]
)
def test_a_currency_the_gateway_takes_passes(gateway, currency):
    assert _check_bounds(body(gateway, currency), Settings(), GATEWAYS) == 900


def test_a_currency_the_gateway_does_not_take_is_refused_naming_the_field():
    with pytest.raises(errors.ValidationFailed) as refused:
        _check_bounds(body("cny-only", "USD"), Settings(), GATEWAYS)
    assert refused.value.field == "currency" and "takes only CNY" in refused.value.detail
