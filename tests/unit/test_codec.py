"""The encrypting payload codec: round trip, key rotation, refusals."""

from __future__ import annotations

import base64
import os

import pytest
from temporalio.api.common.v1 import Payload

from kassa.contracts import CheckoutInput, LineItem
from kassa.settings import Settings
from orchestration.codec import ENCODING, KEY_ID, EncryptionCodec, PayloadKeyError, parse_keys
from orchestration.temporal import DATA_CONVERTER, data_converter, payload_codec

OLD, NEW = os.urandom(32), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def plain(text: str = "order-secret-1001") -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_round_trip_hides_data_and_metadata():
    codec = EncryptionCodec({"k1": NEW})
    [sealed] = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"k1"
    assert b"order-secret" not in sealed.data and b"json/plain" not in sealed.data
    assert await codec.decode([sealed]) == [plain()]


async def test_each_encryption_uses_a_fresh_nonce():
    codec = EncryptionCodec({"k1": NEW})
    first, second = await codec.encode([plain(), plain()])
    assert first.data != second.data


async def test_a_payload_sealed_with_the_old_key_opens_after_rotation():
    [old_sealed] = await EncryptionCodec({"old": OLD}).encode([plain()])
    rotated = EncryptionCodec({"new": NEW, "old": OLD})
    assert await rotated.decode([old_sealed]) == [plain()]
    [new_sealed] = await rotated.encode([plain()])
    assert new_sealed.metadata[KEY_ID] == b"new"  # the first key encrypts


async def test_an_unknown_key_id_fails_clearly():
    [sealed] = await EncryptionCodec({"old": OLD}).encode([plain()])
    with pytest.raises(PayloadKeyError, match=r"key 'old', which is not configured"):
        await EncryptionCodec({"new": NEW}).decode([sealed])


async def test_tampered_ciphertext_fails():
    codec = EncryptionCodec({"k1": NEW})
    [sealed] = await codec.encode([plain()])
    data = bytearray(sealed.data)
    data[-1] ^= 1
    sealed.data = bytes(data)
    with pytest.raises(PayloadKeyError, match="does not authenticate"):
        await codec.decode([sealed])


async def test_a_payload_relabelled_with_another_key_id_fails():
    codec = EncryptionCodec({"a": NEW, "b": NEW})  # same key bytes, different ids
    [sealed] = await codec.encode([plain()])
    sealed.metadata[KEY_ID] = b"b"
    with pytest.raises(PayloadKeyError, match="does not authenticate"):
        await codec.decode([sealed])


async def test_unencrypted_payloads_pass_through_decode():
    """Histories written before encryption was turned on stay readable."""
    assert await EncryptionCodec({"k1": NEW}).decode([plain()]) == [plain()]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"k": "not base64!"}, "not valid base64"),
        ({"k": b64(os.urandom(16))}, "must be 32 bytes"),
        ({"": b64(NEW)}, "non-empty id"),
    ],
)
def test_bad_keys_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_keys(raw)


def test_keys_come_from_settings_in_their_order(monkeypatch):
    keys = f'{{"2026-11": "{b64(NEW)}", "2026-05": "{b64(OLD)}"}}'
    monkeypatch.setenv("KASSA_PAYLOAD_KEYS", keys)
    codec = payload_codec(Settings())
    assert codec is not None and codec.key_id == "2026-11"


def test_no_keys_no_codec(monkeypatch):
    monkeypatch.delenv("KASSA_PAYLOAD_KEYS", raising=False)
    assert payload_codec(Settings()) is None
    assert data_converter(Settings()) is DATA_CONVERTER


async def test_the_data_converter_with_keys_keeps_pydantic_and_encrypts():
    converter = data_converter(Settings(payload_keys={"k1": b64(NEW)}))
    assert converter.payload_converter_class is DATA_CONVERTER.payload_converter_class
    order = CheckoutInput(
        order_id="o-secret-42",
        customer_id="cus_x",
        currency="CNY",
        gateway="sandbox",
        items=[LineItem(sku="s", title="t", unit_amount=100, quantity=1)],
        expires_in_seconds=900,
    )
    [payload] = await converter.encode([order])
    assert payload.metadata["encoding"] == ENCODING
    assert b"o-secret-42" not in payload.data
    assert await converter.decode([payload], [CheckoutInput]) == [order]
