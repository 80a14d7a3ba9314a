import re
from importlib import resources

import pytest

from kassa.money import CURRENCIES, FUNDS, currency_exponent, format_amount


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (12345, "CNY", "123.45 CNY"),
        (5, "USD", "0.05 USD"),
        (500, "JPY", "500 JPY"),
        (1234, "KWD", "1.234 KWD"),
        (0, "EUR", "0.00 EUR"),
    ],
)
def test_amounts_use_the_currency_exponent_not_times_100(amount, currency, shown):
    assert format_amount(amount, currency) == shown


@pytest.mark.parametrize(
    "code", ["XYZ", "cny", "CN", "", "XAU", "XDR", "CLF", "USN", "BOV", "UYW", "XAD"]
)
def test_non_currencies_are_refused(code):
    with pytest.raises(ValueError):
        currency_exponent(code)


def test_every_fund_code_of_the_iso_list_is_refused():
    table = resources.files("iso4217").joinpath("table.xml").read_text(encoding="utf-8")
    funds = re.findall(r'<CcyNm IsFund="true">[^<]*</CcyNm>\s*<Ccy>([A-Z]{3})</Ccy>', table)
    assert {"CLF", "USN", "BOV"} <= set(funds) <= FUNDS
    assert not FUNDS & set(CURRENCIES)


def test_a_refusal_does_not_echo_a_long_code():
    with pytest.raises(ValueError) as refused:
        currency_exponent("A" * 10_000)
    assert len(str(refused.value)) < 60
