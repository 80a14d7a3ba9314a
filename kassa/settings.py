"""Every setting, read from environment variables (prefix KASSA_; see the README's table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_STOREFRONT_KEY = "sk_dev_storefront"
DEV_SUPPORT_KEY = "sk_dev_support"
DEV_SANDBOX_SECRET = "sandbox_whsec_dev"
# Standard Webhooks secrets are "whsec_" + base64 of the key bytes.
DEV_STOREFRONT_WEBHOOK_SECRET = "whsec_a2Fzc2EtZGV2LXN0b3JlZnJvbnQtd2ViaG9vaw=="


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KASSA_", extra="ignore")

    environment: str = "development"
    data_dir: Path = Path(".kassa")

    # Leave unset to use the embedded servers `kassa run` starts.
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("KASSA_DATABASE_URL", "DATABASE_URL")
    )
    temporal_address: str | None = Field(
        None, validation_alias=AliasChoices("KASSA_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = "default"
    task_queue: str = "kassa-checkout"
    # Reaching a production Temporal: mutual TLS (client certificate and key, PEM file paths;
    # optionally the CA that signed the server's certificate, and the name it must carry),
    # or a Temporal Cloud API key (which implies TLS).
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None

    # Payload encryption (AES-256-GCM): {key_id: base64 of 32 random bytes}, as JSON, in
    # order: the first encrypts, every one decrypts. Empty (development): no encryption.
    payload_keys: dict[str, str] = {}
    # The codec server (`kassa codec-server`) that decodes payloads for support's Temporal UI:
    # its port and the UI origins its CORS allows.
    codec_port: int = 8081
    codec_cors_origins: list[str] = ["http://127.0.0.1:8233", "http://localhost:8233"]

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Where gateways send callbacks; the API's address as the outside world sees it.
    public_api_url: str = "http://127.0.0.1:8000"

    storefront_api_key: str = DEV_STOREFRONT_KEY
    support_api_key: str = DEV_SUPPORT_KEY

    # The sandbox gateway (its emulator is part of the dev stack).
    sandbox_url: str = "http://127.0.0.1:8001"
    sandbox_port: int = 8001
    sandbox_api_key: str = "sandbox_sk_dev"
    # Several secrets are accepted at once while one is being rotated; the first one signs.
    sandbox_webhook_secrets: list[str] = [DEV_SANDBOX_SECRET]
    callback_tolerance_seconds: int = 300
    # Make the sandbox misbehave from the start, e.g. '{"seed": 7, "drop_callbacks": 0.3}'
    # (gateways/emulators/faults.py lists the knobs).
    sandbox_faults: dict = {}

    # Alipay: its gateway.do (production: https://openapi.alipay.com/gateway.do; the dev stack
    # runs an emulator on alipay_port) and a keys folder with merchant_private.pem,
    # gateway_public.pem (Alipay's public key) and settings.json ({"app_id": …}); default
    # <data_dir>/keys/alipay, where the emulator writes development keys on first start.
    # Without keys there, Kassa offers no Alipay.
    alipay_gateway_url: str = "http://127.0.0.1:8002/gateway.do"
    alipay_port: int = 8002
    alipay_cashier: Literal["qr", "page"] = "qr"  # a QR code to scan, or the PC cashier page
    alipay_keys_dir: Path | None = None

    # Outgoing webhooks to the storefront (Standard Webhooks); unset: not sent.
    storefront_webhook_url: str | None = None
    storefront_webhook_secret: str = DEV_STOREFRONT_WEBHOOK_SECRET

    # Checkout input bounds.
    expires_in_default: int = 900
    expires_in_min: int = 60
    expires_in_max: int = 86_400
    max_items: int = 50
    max_quantity: int = 100
    max_unit_amount: int = 100_000_000_00  # 100 million major units
    max_body_bytes: int = 64 * 1024
    # How long POST /v1/checkouts (and cancel) wait for the workflow before answering 503.
    checkout_start_timeout_seconds: float = 20.0

    # Storefront refunds are accepted this long after payment; support may refund any time.
    refund_window_days: int = 7

    # While a checkout waits for its callback it also asks the gateway: first after this
    # long, then backing off to the maximum (catches lost callbacks).
    status_check_first_seconds: int = 15
    status_check_max_seconds: int = 300
    # Gateway payments a buyer may open per order: after a decline, try again in the window.
    max_payment_attempts: int = Field(3, ge=1, le=10)

    # Reconciliation (对账): a schedule compares recently ended orders with their gateways.
    reconcile_every_minutes: int = Field(15, ge=1)
    reconcile_lookback_hours: int = Field(72, ge=1)

    # Risk control (风险控制): per-order amount limit and per-customer velocity limit.
    # The amount limit is in major units (yuan, dollars, yen, dinars: the currency's exponent
    # converts it), per currency where set, e.g. '{"JPY": 1000000, "KWD": 2000}', else the
    # default.
    risk_max_order_major: int = Field(50_000, gt=0)
    risk_max_order_major_by_currency: dict[str, Annotated[int, Field(gt=0)]] = {}
    risk_max_orders_per_customer: int = 10
    risk_velocity_window_seconds: int = 3600

    @model_validator(mode="after")
    def _temporal_tls_is_whole(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("KASSA_TEMPORAL_TLS_CERT and KASSA_TEMPORAL_TLS_KEY go together")
        return self

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> Settings:
        if self.environment != "development":
            dev = {
                DEV_STOREFRONT_KEY,
                DEV_SUPPORT_KEY,
                DEV_SANDBOX_SECRET,
                DEV_STOREFRONT_WEBHOOK_SECRET,
            }
            used = dev & {
                self.storefront_api_key,
                self.support_api_key,
                self.storefront_webhook_secret,
                *self.sandbox_webhook_secrets,
            }
            if used:
                raise ValueError("development secrets must be replaced outside development")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
