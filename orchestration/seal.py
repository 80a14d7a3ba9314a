"""Kassa's seal on a checkout. The API seals the input it starts a checkout with (an HMAC
over all of it), and the activity that creates the order refuses an input without a valid
seal: a CheckoutWorkflow started by hand in Temporal, with a price or items the storefront
never set, never gets an order, a payment page or access.

The sealing keys are derived from the payload keys (HKDF, a label of their own), so they
rotate with them: the first seals, every one verifies, and the seal names its key id.
Development without payload keys seals with a fixed key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kassa.contracts import CheckoutInput
from kassa.settings import Settings
from orchestration.codec import parse_keys

DEVELOPMENT_KEY_ID = "dev"
DEVELOPMENT_KEY = b"kassa development checkout seal, never for money!"


def _keys(settings: Settings) -> dict[str, bytes]:
    """{key id: sealing key}, the sealing one first."""
    raw = {key_id: key.get_secret_value() for key_id, key in settings.payload_keys.items()}
    if not raw:
        return {DEVELOPMENT_KEY_ID: DEVELOPMENT_KEY}
    return {
        key_id: HKDF(hashes.SHA256(), 32, salt=None, info=b"kassa checkout seal v1").derive(key)
        for key_id, key in parse_keys(raw).items()
    }


def _mac(key: bytes, checkout: CheckoutInput) -> str:
    unsealed = dataclasses.asdict(dataclasses.replace(checkout, seal=""))
    body = json.dumps(unsealed, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def sealed(settings: Settings, checkout: CheckoutInput) -> CheckoutInput:
    key_id, key = next(iter(_keys(settings).items()))
    return dataclasses.replace(checkout, seal=f"{key_id}:{_mac(key, checkout)}")


def is_sealed(settings: Settings, checkout: CheckoutInput) -> bool:
    """The seal was made by one of our keys over exactly this input."""
    key_id, _, mac = checkout.seal.partition(":")
    key = _keys(settings).get(key_id)
    return key is not None and hmac.compare_digest(mac, _mac(key, checkout))
