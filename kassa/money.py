"""Money is an integer count of minor units plus an ISO-4217 code; never a float.

Exponents differ (CNY and USD 2, JPY 0, KWD 3), so conversion goes through the ISO table,
never through ×100. Not imported by workflow code (it needs the iso4217 package).
"""

from __future__ import annotations

from decimal import Decimal

import iso4217


def currency_exponent(code: str) -> int:
    """Raises ValueError for anything that is not an active ISO-4217 currency with an exponent."""
    try:
        currency = iso4217.Currency(code)
    except ValueError:
        raise ValueError(f"{code!r} is not an ISO-4217 currency code") from None
    if currency.exponent is None:  # XAU, XDR and friends are not money we take
        raise ValueError(f"{code!r} is not a currency Kassa accepts")
    return currency.exponent


def format_amount(amount: int, currency: str) -> str:
    """12345, "CNY" -> "123.45 CNY"; 500, "JPY" -> "500 JPY". For display only: a code that
    is no currency (a gateway may report anything) shows its minor units as they are."""
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        return f"{amount} {currency} (minor units)"
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f} {currency}"
