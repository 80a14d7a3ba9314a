"""Money is an integer count of minor units plus an ISO-4217 code; never a float.

Exponents differ (CNY and USD 2, JPY 0, KWD 3), so conversion goes through the ISO table,
never through ×100. Not imported by workflow code (it needs the iso4217 package).
"""

from __future__ import annotations

from decimal import Decimal

import iso4217

# ISO-4217's fund codes (marked IsFund in its list: indexed units, next-day dollars…) and the
# units of account it lists with an exponent: bookkeeping units, not money a buyer pays in.
FUNDS = frozenset({"BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW", "XAD"})


def currency_exponent(code: str) -> int:
    """Raises ValueError for anything that is not an active ISO-4217 currency with an exponent,
    or is a fund or unit of account. The message shows at most a few characters of `code`."""
    try:
        currency = iso4217.Currency(code)
    except ValueError:
        raise ValueError(f"{_shown(code)} is not an ISO-4217 currency code") from None
    if currency.exponent is None or code in FUNDS:  # XAU, XDR, CLF… are not money we take
        raise ValueError(f"{code!r} is not a currency Kassa accepts")
    return currency.exponent


def _shown(code: str, limit: int = 8) -> str:
    """`code` for a message: its repr, cut short (a message never echoes unbounded input)."""
    return repr(code) if len(code) <= limit else repr(code[:limit]) + "…"


# Every currency Kassa accepts (the published enum says the same).
CURRENCIES = sorted(
    c.code for c in iso4217.Currency if c.exponent is not None and c.code not in FUNDS
)


def format_amount(amount: int, currency: str) -> str:
    """12345, "CNY" -> "123.45 CNY"; 500, "JPY" -> "500 JPY". For display only: a code that
    is no currency (a gateway may report anything) shows its minor units as they are."""
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        return f"{amount} {currency} (minor units)"
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f} {currency}"
