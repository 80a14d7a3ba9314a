"""Payment gateways: the interface (base), one adapter per gateway, and their emulators."""

from __future__ import annotations

import httpx

from gateways.base import PaymentGateway
from gateways.sandbox import SandboxGateway
from kassa.settings import Settings


def build_gateways(settings: Settings, http: httpx.AsyncClient) -> dict[str, PaymentGateway]:
    """Every gateway this deployment can use, by the name the API accepts."""
    return {
        "sandbox": SandboxGateway(
            http,
            settings.sandbox_url,
            settings.sandbox_api_key,
            settings.sandbox_webhook_secrets,
            settings.callback_tolerance_seconds,
        ),
    }
