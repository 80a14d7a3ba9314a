"""The sandbox gateway's wire protocol, shared by its emulator and Kassa's adapter.

Callbacks are signed like Stripe's: header `Sandbox-Signature: t=<unix>,v1=<hex>` where v1 is
HMAC-SHA256(secret, f"{t}." + body). A receiver accepts any of its configured secrets (so a
secret can be rotated) and refuses timestamps outside its tolerance (so a captured callback
cannot be replayed later).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Sandbox-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secrets: list[str], header: str | None, body: bytes, tolerance_seconds: int) -> None:
    """Raise ValueError, saying why, unless `header` signs `body` with one of `secrets`."""
    if not header:
        raise ValueError(f"missing {SIGNATURE_HEADER} header")
    if not header.isascii():  # hmac.compare_digest takes ASCII strings only
        raise ValueError(f"malformed {SIGNATURE_HEADER} header")
    pairs = [p.strip().split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in pairs if k == "t"]
    signatures = [v for k, v in pairs if k == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or len(timestamps[0]) > 12:
        raise ValueError(f"malformed {SIGNATURE_HEADER} header")
    if not signatures:
        raise ValueError(f"malformed {SIGNATURE_HEADER} header")
    t = int(timestamps[0])
    if abs(time.time() - t) > tolerance_seconds:
        raise ValueError("signature timestamp outside the tolerance")
    for secret in secrets:
        expected = sign(secret, body, t).split("v1=", 1)[1]
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return
    raise ValueError("signature does not match")
