import pytest

from kassa.money import currency_exponent, format_amount


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


@pytest.mark.parametrize("code", ["XYZ", "cny", "CN", "", "XAU", "XDR"])
def test_non_currencies_are_refused(code):
    with pytest.raises(ValueError):
        currency_exponent(code)
