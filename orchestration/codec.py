"""Encrypting payload codec: every payload Kassa hands Temporal (workflow inputs and results,
activity arguments, signals, updates, memos, failures' details) is sealed with AES-256-GCM
before it leaves the process, so Temporal's database, its UI and anyone reading a history
see ciphertext. Only the worker, the API, the CLI and the codec server (tooling/codec_server.py,
for support's UI) hold the keys.

Keys rotate: the first configured key encrypts; every configured key decrypts the payloads
sealed with it, found by the key id in each payload's metadata. Rotation is "add the new key
first, keep the old ones until no history needing them is retained"."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class PayloadKeyError(ValueError):
    """A payload Kassa cannot decrypt: unknown key id, or not what the key sealed."""


def parse_keys(raw: Mapping[str, str]) -> dict[str, bytes]:
    """{key_id: base64 of 32 bytes} as configured (KASSA_PAYLOAD_KEYS) -> {key_id: key},
    order kept (the first encrypts). Refuses anything but AES-256 keys."""
    keys: dict[str, bytes] = {}
    for key_id, encoded in raw.items():
        if not key_id:
            raise ValueError("a payload key needs a non-empty id")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"payload key {key_id!r} is not valid base64") from err
        if len(key) != 32:
            raise ValueError(f"payload key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")
        keys[key_id] = key
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload: a fresh 96-bit nonce, the key id bound in as associated
    data (a payload relabelled with another key id fails to open). The sealed payload is the
    whole original Payload, serialized, so its metadata (encoding, …) is hidden too."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("an encryption codec needs at least one key")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = next(iter(keys))

    @property
    def key_id(self) -> str:
        """The id of the key that encrypts."""
        return self._current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._current.encode()
        sealed = self._keys[self._current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours (written before encryption was turned on): as it is
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._keys.get(key_id)
        if aead is None:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r}, which is not configured "
                f"(known: {', '.join(self._keys)}); add it to KASSA_PAYLOAD_KEYS"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = aead.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag as err:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r} does not authenticate "
                "(tampered with, or another key under that id)"
            ) from err
        return Payload.FromString(plain)
