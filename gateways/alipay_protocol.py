"""Alipay's OpenAPI wire protocol ("gateway.do", version 1.0, RSA2 keys), shared by Kassa's
adapter (gateways/alipay.py) and the emulator (gateways/emulators/alipay/). Pure: no I/O.

Signing (RSA2 = SHA256withRSA, PKCS#1 v1.5, standard base64; the `cryptography` package):

- Requests: every parameter (query string and form body merged) but `sign`, empty values
  dropped, sorted by key, joined `k=v` with `&` with the raw (not URL-encoded) values, signed
  with the merchant's (app's) private key. `sign_type` is part of the signed content.
- Responses: `{"<method, . replaced by _>_response": {...}, "sign": "..."}`; `sign` is Alipay's
  signature over the EXACT bytes of the `..._response` value as they came over the wire, from
  its `{` to its matching `}`; never over a re-serialization (key order, spacing and escapes
  differ between implementations).
- Notifies (form posts to notify_url): like requests, but without `sign` AND `sign_type`,
  verified with Alipay's public key. They carry no timestamp to check: no tolerance window.

Amounts are yuan as decimal strings with two places ("88.88"); Kassa's are integer fen.
Conversion is exact (integer arithmetic, never a float), and only for CNY.

Merchant references (`out_trade_no`): Alipay takes letters, digits and `_`, at most 64.
Kassa order ids match `^[A-Za-z0-9_.:-]{1,64}$` and every payment attempt after the first
needs a reference of its own. `out_trade_no()` escapes with `_` (see there); it is
deterministic, and reversible by `order_of_out_trade_no()` whenever it fits in 64. It cannot
always fit: the escapes make it longer than the id (64 ids with `.` need 128 characters), and
no reversible encoding maps every id of up to 64 characters out of a 66-letter alphabet,
plus an attempt number, into 64 characters out of 63 letters (there are more ids than
references). What does not fit gets a hashed reference (`_x` + 62 hex digits of SHA-256),
the same every time, but one only a stored mapping can turn back into its order. The core
keeps every attempt's reference in a table (`gateway_payments`, written before the payment
is opened, read when a callback arrives), so callbacks look references up and never decode
them; `order_of_out_trade_no` is for people and tests reading Alipay's records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_TYPE = "RSA2"
VERSION = "1.0"
CHARSET = "utf-8"
CURRENCY = "CNY"  # the only currency Alipay's domestic trade APIs take
NOTIFY_REPLY = "success"  # the exact body Alipay needs back from notify_url, else it retries

# Alipay's time format and zone: "yyyy-MM-dd HH:mm:ss", Beijing time (UTC+8, no DST).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

# total_amount and refund_amount: [0.01, 100000000] yuan.
MIN_AMOUNT, MAX_AMOUNT = 1, 100_000_000_00

OUT_TRADE_NO_MAX = 64
OUT_TRADE_NO_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

# The subject: at most 256 characters; `/`, `=` and `&` are refused by Alipay, and braces
# break the brace-counting response extractors some SDKs use (the subject comes back in
# responses and notifies).
SUBJECT_MAX = 256
_SUBJECT_FORBIDDEN = "/=&{}"


# ---- keys and signatures -----------------------------------------------------------------------


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """A PEM private key (PKCS#1 or PKCS#8)."""
    key = serialization.load_pem_private_key(_bytes(pem), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """A PEM public key (SubjectPublicKeyInfo, or PKCS#1)."""
    key = serialization.load_pem_public_key(_bytes(pem))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa2_sign(key: rsa.RSAPrivateKey, content: bytes) -> str:
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(key: rsa.RSAPublicKey, content: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, content, padding.PKCS1v15(), hashes.SHA256())
    except _BadSignature:
        return False
    return True


def sign_content(params: Mapping[str, str], exclude: tuple[str, ...]) -> bytes:
    """The signed string: sorted non-empty parameters but `exclude`, `k=v` joined by `&`."""
    pairs = sorted((k, v) for k, v in params.items() if k not in exclude and v not in (None, ""))
    return "&".join(f"{k}={v}" for k, v in pairs).encode()


def sign_request(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The parameters with `sign_type` and `sign` (the merchant signs its requests)."""
    signed = {**params, "sign_type": SIGN_TYPE}
    signed.pop("sign", None)
    signed["sign"] = rsa2_sign(key, sign_content(signed, ("sign",)))
    return signed


def verify_request(params: Mapping[str, str], key: rsa.RSAPublicKey) -> bool:
    signature = params.get("sign")
    if not signature or params.get("sign_type", SIGN_TYPE) != SIGN_TYPE:
        return False
    return rsa2_verify(key, sign_content(params, ("sign",)), signature)


def sign_notify(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    """A notify's parameters with `sign_type` and `sign` (Alipay signs its notifies)."""
    signed = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
    signature = rsa2_sign(key, sign_content(signed, ()))
    return {**signed, "sign_type": SIGN_TYPE, "sign": signature}


def verify_notify(params: Mapping[str, str], key: rsa.RSAPublicKey) -> None:
    """Raise ValueError, saying why, unless Alipay signed these notify parameters."""
    signature = params.get("sign")
    if not signature:
        raise ValueError("the notify is not signed")
    if params.get("sign_type", SIGN_TYPE) != SIGN_TYPE:
        raise ValueError(f"unexpected sign_type {params.get('sign_type')!r}")
    if not rsa2_verify(key, sign_content(params, ("sign", "sign_type")), signature):
        raise ValueError("the notify's signature does not verify")


# ---- the response envelope ------------------------------------------------------------------


def response_key(method: str) -> str:
    """alipay.trade.query -> alipay_trade_query_response"""
    return method.replace(".", "_") + "_response"


def response_body(method: str, content: Mapping, key: rsa.RSAPrivateKey | None) -> bytes:
    """Alipay's answer: the response object, then its signature (`sign` immediately after it,
    where SDKs look for it). Unsigned when `key` is None (gateway-level errors)."""
    inner = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    body = f'{{"{response_key(method)}":{inner}'
    if key is not None:
        body += f',"sign":"{rsa2_sign(key, inner.encode())}"'
    return (body + "}").encode()


class ResponseError(ValueError):
    """An answer that is not Alipay's envelope, or whose signature does not verify."""


def open_response(method: str, body: bytes, key: rsa.RSAPublicKey) -> tuple[dict, bool]:
    """The response object of `method`'s answer and whether it was signed (and verified).

    The signature is checked over the exact bytes of the object as received. An unsigned
    answer is returned as such (Alipay does not sign some gateway-level errors, e.g. a
    refused request signature); a signature that does not verify raises ResponseError."""
    try:
        text = body.decode("utf-8")
        spans = _top_level_spans(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResponseError(f"not a JSON object: {exc}") from exc
    name = response_key(method)
    if name not in spans:
        name = "error_response"
        if name not in spans:
            raise ResponseError(f"no {response_key(method)} in the answer")
    start, end = spans[name]
    raw = text[start:end]
    content = json.loads(raw)
    if not isinstance(content, dict):
        raise ResponseError(f"{name} is not an object")
    signature = json.loads(text[slice(*spans["sign"])]) if "sign" in spans else ""
    if not signature:
        return content, False
    if not isinstance(signature, str) or not rsa2_verify(key, raw.encode(), signature):
        raise ResponseError("the answer's signature does not verify")
    return content, True


def _top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each top-level member's value lies in the JSON object `text`, found with the JSON
    decoder itself (so braces inside strings are no trouble)."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    i = ws.match(text, i + 1).end()
    spans: dict[str, tuple[int, int]] = {}
    if text[i : i + 1] == "}":
        return spans
    while True:
        name, i = decoder.raw_decode(text, i)
        if not isinstance(name, str):
            raise ValueError("member name is not a string")
        i = ws.match(text, i).end()
        if text[i : i + 1] != ":":
            raise ValueError("expected ':'")
        start = ws.match(text, i + 1).end()
        _, end = decoder.raw_decode(text, start)
        if name in spans:
            raise ValueError(f"duplicate member {name!r}")
        spans[name] = (start, end)
        i = ws.match(text, end).end()
        if text[i : i + 1] == "}":
            if text[ws.match(text, i + 1).end() :]:
                raise ValueError("data after the object")
            return spans
        if text[i : i + 1] != ",":
            raise ValueError("expected ',' or '}'")
        i = ws.match(text, i + 1).end()


# ---- amounts ----------------------------------------------------------------------------------

_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?$")


def to_yuan(amount: int, currency: str) -> str:
    """19900, "CNY" -> "199.00". Raises ValueError for another currency or out of range."""
    if currency != CURRENCY:
        raise ValueError(f"Alipay takes {CURRENCY} only, not {currency!r}")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"an amount is an integer of fen, not {amount!r}")
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise ValueError(f"{amount} fen is outside Alipay's range [0.01, 100000000] yuan")
    return f"{amount // 100}.{amount % 100:02d}"


def from_yuan(text: str) -> int:
    """ "199.00" (or "199", "199.5") -> 19900 fen. Raises ValueError for anything else."""
    match = _YUAN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a yuan amount: {text!r}")
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


# ---- subjects ---------------------------------------------------------------------------------


def clean_subject(text: str, limit: int = SUBJECT_MAX, fallback: str = "Order") -> str:
    """A subject Alipay takes: control characters and `/ = & { }` become spaces, runs of white
    space one space, trimmed, cut to `limit` characters with an ellipsis (never an empty
    one: `fallback`)."""
    chars = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in _SUBJECT_FORBIDDEN or unicodedata.category(ch)[0] in "CZ":
            ch = " "  # controls, separators (line, paragraph, odd spaces), forbidden
        chars.append(ch)
    subject = " ".join("".join(chars).split())
    if len(subject) > limit:
        subject = subject[: limit - 1].rstrip() + "…"
    return subject or fallback


def subject_is_valid(subject: str) -> bool:
    """What the emulator checks: 1 to SUBJECT_MAX characters, none forbidden."""
    return 0 < len(subject) <= SUBJECT_MAX and not any(c in _SUBJECT_FORBIDDEN for c in subject)


# ---- merchant references ----------------------------------------------------------------------

_ESCAPES = {"_": "__", ".": "_d", ":": "_c", "-": "_h"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}
_HASHED = "_x"  # never an escape: marks a hashed reference


def out_trade_no(order_id: str, attempt: int = 1) -> str:
    """The out_trade_no of the order's `attempt`-th payment: the order id with `_` doubled and
    `.`, `:`, `-` escaped as `_d`, `_c`, `_h`, then `_a<n>` for attempts after the first
    ("demo-1001", 2 -> "demo_h1001_a2"). Deterministic; reversible by
    `order_of_out_trade_no` when it fits in 64 characters, hashed otherwise (module doc)."""
    if not ORDER_ID_PATTERN.match(order_id):
        raise ValueError(f"not a Kassa order id: {order_id!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"an attempt is a positive integer, not {attempt!r}")
    encoded = "".join(_ESCAPES.get(c, c) for c in order_id)
    if attempt > 1:
        encoded += f"_a{attempt}"
    if len(encoded) <= OUT_TRADE_NO_MAX:
        return encoded
    digest = hashlib.sha256(f"{order_id}\n{attempt}".encode()).hexdigest()
    return _HASHED + digest[: OUT_TRADE_NO_MAX - len(_HASHED)]


def is_hashed(reference: str) -> bool:
    return reference.startswith(_HASHED)


def order_of_out_trade_no(reference: str) -> tuple[str, int] | None:
    """The (order id, attempt) an out_trade_no stands for; None for a hashed reference or
    anything `out_trade_no` never makes. Read left to right, so an escaped `_` before an `a`
    (order id "x_a2" is "x__a2") is never taken for the attempt suffix."""
    if not OUT_TRADE_NO_PATTERN.match(reference) or is_hashed(reference):
        return None
    out, attempt, i = [], 1, 0
    while i < len(reference):
        c = reference[i]
        i += 1
        if c != "_":
            out.append(c)
            continue
        nxt = reference[i : i + 1]
        if nxt == "a":  # the attempt suffix: digits to the end
            digits = reference[i + 1 :]
            if not digits.isdigit() or digits.startswith("0") or int(digits) < 2:
                return None
            attempt = int(digits)
            break
        if nxt not in _UNESCAPES:
            return None
        out.append(_UNESCAPES[nxt])
        i += 1
    order_id = "".join(out)
    if not ORDER_ID_PATTERN.match(order_id) or out_trade_no(order_id, attempt) != reference:
        return None  # e.g. a hashed one's twin, or an id longer than Kassa's
    return order_id, attempt


# ---- times ------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """An aware datetime as Alipay writes times (Beijing time, to the second, truncated)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime: say its time zone")
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Alipay's "yyyy-MM-dd HH:mm:ss" (or "yyyy-MM-dd HH:mm"), Beijing time, as UTC."""
    for fmt in (TIME_FORMAT, "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=BEIJING).astimezone(UTC)
        except (ValueError, TypeError):
            continue
    raise ValueError(f"not an Alipay time: {text!r}")


_EXPRESS = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")


def parse_timeout_express(text: str, start: datetime) -> datetime:
    """When a relative timeout ("90m", "2h", "15d"; "1c": the end of `start`'s day in Beijing)
    counted from `start` runs out. Alipay takes 1m to 15d, no decimals."""
    if text == "1c":
        local = start.astimezone(BEIJING)
        return (
            local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        ).astimezone(UTC)
    match = _EXPRESS.match(text or "")
    if match is None:
        raise ValueError(f"not a timeout: {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
    if delta > timedelta(days=15):
        raise ValueError(f"longer than 15d: {text!r}")
    return start + delta


def _bytes(pem: str | bytes) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem
