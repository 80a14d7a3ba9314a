"""The sandbox gateway: a small payment gateway of our own, served over HTTP.

It behaves like a real one: payments are created idempotently per merchant order id, the
buyer pays (or declines) on an HTML page, the merchant gets a signed callback retried with
backoff until it answers 2xx, and the merchant can query, close and refund. Unpaid payments
expire. State survives restarts when `state_file` is set (the dev stack sets it), callbacks
not yet delivered included: they go out when the gateway is back.

Run it alone: `python -m gateways.emulators.sandbox` (port from KASSA_SANDBOX_PORT).
"""

from gateways.emulators.sandbox.app import app_from_settings, create_app
from gateways.emulators.sandbox.state import SandboxConfig

__all__ = ["SandboxConfig", "app_from_settings", "create_app"]
