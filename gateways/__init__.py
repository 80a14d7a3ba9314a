"""Payment gateways: the interface (base), one adapter per gateway, and their emulators."""

from __future__ import annotations

import json

import httpx

from gateways.alipay import AlipayGateway
from gateways.base import PaymentGateway
from gateways.metered import Metered
from gateways.sandbox import SandboxGateway
from kassa.settings import Settings


def build_gateways(settings: Settings, http: httpx.AsyncClient) -> dict[str, PaymentGateway]:
    """Every gateway this deployment can use, by the name the API accepts, metered."""
    gateways: dict[str, PaymentGateway] = {}
    if settings.sandbox_enabled:  # development, or a staging environment that allows it
        gateways["sandbox"] = SandboxGateway(
            http,
            settings.sandbox_url,
            settings.sandbox_api_key.get_secret_value(),
            [s.get_secret_value() for s in settings.sandbox_webhook_secrets],
            settings.callback_tolerance_seconds,
        )
    keys = settings.alipay_keys_dir or settings.data_dir / "keys" / "alipay"
    if (keys / "settings.json").is_file():
        gateways["alipay"] = AlipayGateway(
            http,
            settings.alipay_gateway_url,
            json.loads((keys / "settings.json").read_text())["app_id"],
            (keys / "merchant_private.pem").read_bytes(),
            (keys / "gateway_public.pem").read_bytes(),
            cashier=settings.alipay_cashier,
        )
    return {name: Metered(gateway) for name, gateway in gateways.items()}
