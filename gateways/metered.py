"""Every adapter's calls timed and their failures counted (kassa_gateway_call_seconds,
kassa_gateway_call_errors_total), by gateway and call, in one place rather than in each
adapter. Everything else (reference, parse_callback, …) is the adapter's, untouched."""

from __future__ import annotations

import functools
import time

from gateways.base import PaymentGateway
from kassa.errors import GatewayRejected
from kassa.metrics import GATEWAY_CALL, GATEWAY_ERRORS, known_gateway

CALLS = ("create_payment", "get_payment", "list_payments", "close_payment", "refund", "get_refund")


class Metered:
    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway
        known_gateway(gateway.name)
        for call in CALLS:
            setattr(self, call, self._timed(call, getattr(gateway, call)))

    def __getattr__(self, name: str):
        return getattr(self._gateway, name)

    def _timed(self, call: str, method):
        name = self._gateway.name

        @functools.wraps(method)
        async def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except GatewayRejected:
                GATEWAY_ERRORS.labels(name, call, "rejected").inc()
                raise
            except Exception:
                GATEWAY_ERRORS.labels(name, call, "error").inc()
                raise
            finally:
                GATEWAY_CALL.labels(name, call).observe(time.perf_counter() - started)

        return timed
