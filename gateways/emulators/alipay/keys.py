"""The key pairs of the emulated Alipay and of the merchant, made on first start.

A keys directory (`.kassa/keys/alipay/` in the dev stack; .gitignore keeps .kassa/ out of
git, so keys are never committed) holds:

    merchant_private.pem  the merchant's (app's) private key: Kassa's adapter signs with it
    merchant_public.pem   its public key, as uploaded to Alipay: the emulator verifies with it
    gateway_private.pem   the emulated Alipay's private key: it signs answers and notifies
    gateway_public.pem    Alipay's public key: the adapter verifies with it
    settings.json         {"app_id": "..."}

Existing files are kept, so the merchant and the emulator agree across restarts.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from gateways import alipay_protocol as protocol

DEFAULT_KEYS_DIR = Path(".kassa") / "keys" / "alipay"


@dataclass(frozen=True)
class AlipayKeys:
    app_id: str
    merchant_private: rsa.RSAPrivateKey
    merchant_public: rsa.RSAPublicKey
    gateway_private: rsa.RSAPrivateKey
    gateway_public: rsa.RSAPublicKey
    directory: Path

    def pem(self, name: str) -> str:
        """A key file's text, e.g. pem("merchant_private") (for SDKs that take PEM)."""
        return (self.directory / f"{name}.pem").read_text()


def ensure_keys(directory: Path = DEFAULT_KEYS_DIR) -> AlipayKeys:
    """The keys under `directory`, made there first if missing (private files 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    for party in ("merchant", "gateway"):
        private, public = directory / f"{party}_private.pem", directory / f"{party}_public.pem"
        if not private.exists():
            key = protocol.new_private_key()
            _write(private, protocol.private_pem(key), private=True)
            _write(public, protocol.public_pem(key.public_key()))
        elif not public.exists():
            key = protocol.load_private_key(private.read_bytes())
            _write(public, protocol.public_pem(key.public_key()))
    settings = directory / "settings.json"
    if not settings.exists():
        app_id = "2021" + "".join(secrets.choice("0123456789") for _ in range(12))
        _write(settings, json.dumps({"app_id": app_id}, indent=2).encode())
    return AlipayKeys(
        app_id=json.loads(settings.read_text())["app_id"],
        merchant_private=protocol.load_private_key(
            (directory / "merchant_private.pem").read_bytes()
        ),
        merchant_public=protocol.load_public_key((directory / "merchant_public.pem").read_bytes()),
        gateway_private=protocol.load_private_key((directory / "gateway_private.pem").read_bytes()),
        gateway_public=protocol.load_public_key((directory / "gateway_public.pem").read_bytes()),
        directory=directory,
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    if private:
        tmp.chmod(0o600)
    tmp.replace(path)
