"""Every setting, read from environment variables (prefix KASSA_; see the README's table)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_STOREFRONT_KEY = "sk_dev_storefront"
DEV_SUPPORT_KEY = "sk_dev_support"
DEV_SANDBOX_SECRET = "sandbox_whsec_dev"
# Standard Webhooks secrets are "whsec_" + base64 of the key bytes.
DEV_STOREFRONT_WEBHOOK_SECRET = "whsec_a2Fzc2EtZGV2LXN0b3JlZnJvbnQtd2ViaG9vaw=="
DEV_SANDBOX_API_KEY = "sandbox_sk_dev"
# Outside development every key and secret is at least this long (and none of the above).
MIN_SECRET_LENGTH = 32
MIN_WEBHOOK_KEY_BYTES = 24  # the bytes behind a storefront `whsec_` secret
# The most items any list in an API response holds (refunds of an order, ledger pages).
MAX_LISTED = 100

# Alipay's gateway: the default outside development (the emulator's is the default in it).
ALIPAY_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
DEV_ALIPAY_GATEWAY_URL = "http://127.0.0.1:8002/gateway.do"


def key_hash(key: str) -> str:
    """How API keys are configured: the SHA-256 of the key, hex (`kassa keys hash`)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    """One API key as configured: who holds it, its role, and the SHA-256 of the key (hex);
    the key itself is never configured. Several per role at once let a key be rotated."""

    holder: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    role: Literal["storefront", "support"]
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", repr=False)

    @field_validator("sha256")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


# Accepted in development when no KASSA_API_KEYS are configured (the README documents them).
DEV_API_KEYS = (
    ApiKey(holder="dev-storefront", role="storefront", sha256=key_hash(DEV_STOREFRONT_KEY)),
    ApiKey(holder="dev-support", role="support", sha256=key_hash(DEV_SUPPORT_KEY)),
)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's error never repeats the values (secrets).
    model_config = SettingsConfigDict(
        env_prefix="KASSA_", extra="ignore", hide_input_in_errors=True
    )

    # "development" runs with the well-known development keys and secrets; anything else is
    # production mode: strong secrets, hashed API keys, https webhooks, no sandbox unless
    # allowed (see _production_mode).
    environment: str = "development"
    data_dir: Path = Path(".kassa")

    # Leave unset to use the embedded servers `kassa run` starts.
    database_url: str | None = Field(  # may hold a password: kept out of repr
        None, validation_alias=AliasChoices("KASSA_DATABASE_URL", "DATABASE_URL"), repr=False
    )
    temporal_address: str | None = Field(
        None, validation_alias=AliasChoices("KASSA_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = "default"
    task_queue: str = "kassa-checkout"
    # The worker's capacity (docs/performance.md). The cache keeps this many workflows in
    # memory between their tasks (sticky): one evicted is replayed from its history when
    # its next callback, timer or request comes, so memory stays bounded however many
    # checkouts wait. The limits are per worker process; scale out with more processes.
    worker_max_cached_workflows: int = Field(250, ge=0)
    worker_max_concurrent_workflow_tasks: int = Field(50, ge=1)
    worker_max_concurrent_activities: int = Field(50, ge=1)
    worker_max_concurrent_local_activities: int = Field(100, ge=1)
    # A cached workflow's next task waits this long for its own worker before any worker
    # takes it (and replays it): short, so a dead worker's checkouts move on quickly.
    worker_sticky_timeout_seconds: float = Field(5, gt=0)
    # "guarded": Temporal's sandbox runs each workflow's own module apart and refuses a
    # non-deterministic call in it at run time. "off": no sandbox, less CPU per workflow
    # run (docs/performance.md measures it); the tests and the replay tests then are the
    # only guard, so the test suite always runs guarded.
    worker_workflow_sandbox: Literal["guarded", "off"] = "guarded"
    # The embedded Temporal dev server of `kassa run` (when no temporal_address): its gRPC
    # and Web UI ports.
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    # Reaching a production Temporal: mutual TLS (client certificate and key, PEM file paths;
    # optionally the CA that signed the server's certificate, and the name it must carry),
    # or a Temporal Cloud API key (which implies TLS).
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None

    # Payload encryption (AES-256-GCM): {key_id: base64 of 32 random bytes}, as JSON, in
    # order: the first encrypts, every one decrypts. Empty (development only): no encryption.
    payload_keys: dict[str, SecretStr] = {}
    # The codec server (`kassa codec-server`) that decodes payloads for support's Temporal UI:
    # its port and the UI origins its CORS allows.
    codec_port: int = 8081
    codec_cors_origins: list[str] = ["http://127.0.0.1:8233", "http://localhost:8233"]

    # Metrics (Prometheus): the API serves Kassa's on its own port at /metrics; each worker
    # serves Kassa's on worker_metrics_port and the Temporal SDK's on temporal_metrics_port
    # (both at /metrics, on metrics_host). 0: not served.
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464
    temporal_metrics_port: int = 9465
    # Traces (OpenTelemetry) are sent to this OTLP/HTTP URL when set, e.g.
    # http://collector:4318/v1/traces; unset: kept in the process (ids still in the logs).
    otlp_traces_url: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Where gateways send callbacks; the API's address as the outside world sees it (https
    # outside development).
    public_api_url: str = "http://127.0.0.1:8000"

    # The API keys, hashed, e.g. '[{"holder": "shop-web", "role": "storefront", "sha256":
    # "<hex>"}]'; none in development: the development keys (DEV_API_KEYS).
    api_keys: list[ApiKey] = []

    # The sandbox gateway (its emulator is part of the dev stack). Outside development Kassa
    # offers it only when allowed (a staging environment; never "production").
    allow_sandbox: bool = False
    sandbox_url: str = "http://127.0.0.1:8001"
    sandbox_port: int = 8001
    sandbox_api_key: SecretStr = SecretStr(DEV_SANDBOX_API_KEY)
    # Several secrets are accepted at once while one is being rotated; the first one signs.
    sandbox_webhook_secrets: list[SecretStr] = [SecretStr(DEV_SANDBOX_SECRET)]
    callback_tolerance_seconds: int = 300
    # Make the sandbox misbehave from the start, e.g. '{"seed": 7, "drop_callbacks": 0.3}'
    # (gateways/emulators/faults.py lists the knobs).
    sandbox_faults: dict = {}

    # Alipay: its gateway.do (the dev stack runs an emulator on alipay_port; outside
    # development Alipay's own, ALIPAY_GATEWAY_URL, unless set, and https) and a keys folder
    # with merchant_private.pem, gateway_public.pem (Alipay's public key) and settings.json
    # ({"app_id": …}); default <data_dir>/keys/alipay, where the emulator writes development
    # keys on first start. Without keys there, Kassa offers no Alipay.
    alipay_gateway_url: str = DEV_ALIPAY_GATEWAY_URL
    alipay_port: int = 8002
    alipay_cashier: Literal["qr", "page"] = "qr"  # a QR code to scan, or the PC cashier page
    alipay_keys_dir: Path | None = None

    # Outgoing webhooks to the storefront (Standard Webhooks); unset: not sent.
    storefront_webhook_url: str | None = None
    storefront_webhook_secret: SecretStr = SecretStr(DEV_STOREFRONT_WEBHOOK_SECRET)

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
    # Refunds one order may have (every one asked for counts, failed ones too): keeps an
    # order's refund list short and one order from being refunded a cent at a time.
    max_refunds_per_order: int = Field(10, ge=1, le=MAX_LISTED)

    # Rate limits of the API, in the `limits` package's notation: "50/second", "3000 per
    # minute", several at once with ";" ("20/second;600/minute"). Per key holder and role,
    # and for gateway callbacks per gateway and client address. Kept in memory: per API
    # process (N processes take N times as much).
    rate_limit_storefront: str = "50/second"
    rate_limit_support: str = "10/second"
    rate_limit_callbacks: str = "100/second"

    # While a checkout waits for its callback it asks the gateway once, after this long
    # (a callback lost on a fast payment is found early). With a maximum above 0 it goes on
    # asking, backing off to it: a cost per open checkout (docs/performance.md), left off by
    # default since the gateway redelivers lost callbacks and the close asks again.
    status_check_first_seconds: int = Field(60, ge=1)
    status_check_max_seconds: int = Field(0, ge=0)
    # Gateway payments a buyer may open per order: after a decline, try again in the window.
    max_payment_attempts: int = Field(3, ge=1, le=10)
    # A payment held for support (paid another amount) escalates after this many hours.
    hold_escalate_hours: int = Field(24, ge=1)

    # Reconciliation (对账): a schedule compares recently ended orders with their gateways.
    reconcile_every_minutes: int = Field(15, ge=1)
    reconcile_lookback_hours: int = Field(72, ge=1)
    # How long after its payment window (or, before a payment was opened, its last change) an
    # order left created or awaiting payment, whose checkout no longer runs (terminated in the
    # Temporal UI), waits before reconciliation closes its payments and ends it.
    reconcile_grace_seconds: int = Field(1800, ge=0)

    # Risk control (风险控制): per-order amount limit and per-customer velocity limit.
    # The amount limit is in major units (yuan, dollars, yen, dinars: the currency's exponent
    # converts it), per currency where set, e.g. '{"JPY": 1000000, "KWD": 2000}', else the
    # default.
    risk_max_order_major: int = Field(50_000, gt=0)
    risk_max_order_major_by_currency: dict[str, Annotated[int, Field(gt=0)]] = {}
    risk_max_orders_per_customer: int = 10
    risk_velocity_window_seconds: int = 3600

    @field_validator("rate_limit_storefront", "rate_limit_support", "rate_limit_callbacks")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parsed = limits.parse_many(value)
        except ValueError:
            parsed = []
        if not parsed or any(item.amount < 1 for item in parsed):
            raise ValueError(
                'a rate limit like "50/second", "3000 per minute" or "20/second;600/minute"'
            )
        return value

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def sandbox_enabled(self) -> bool:
        """Whether Kassa offers the sandbox gateway."""
        return self.development or self.allow_sandbox

    def holder_of(self, key: str) -> ApiKey | None:
        """The configured key `key` is (by its SHA-256), or None. Every configured hash is
        compared, in constant time, with no early exit."""
        presented = hashlib.sha256(key.encode()).digest()
        found = None
        for accepted in self.accepted_api_keys():
            if hmac.compare_digest(presented, bytes.fromhex(accepted.sha256)) and found is None:
                found = accepted
        return found

    def accepted_api_keys(self) -> tuple[ApiKey, ...]:
        """The keys the API accepts: those configured, or in development the dev keys."""
        if not self.api_keys and self.development:
            return DEV_API_KEYS
        return tuple(self.api_keys)

    @model_validator(mode="after")
    def _temporal_tls_is_whole(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("KASSA_TEMPORAL_TLS_CERT and KASSA_TEMPORAL_TLS_KEY go together")
        return self

    @model_validator(mode="after")
    def _api_keys_are_distinct(self) -> Settings:
        hashes = [k.sha256 for k in self.api_keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("KASSA_API_KEYS: the same key is configured twice")
        return self

    @model_validator(mode="after")
    def _production_mode(self) -> Settings:
        """Outside development Kassa refuses to start on anything only fit for development.
        The messages name the setting, never its value."""
        if self.development:
            return self
        if not self.api_keys:
            raise ValueError(
                "KASSA_API_KEYS must configure the API keys outside development "
                "(hashes: kassa keys hash)"
            )
        dev_hashes = {k.sha256 for k in DEV_API_KEYS}
        for key in self.api_keys:
            if key.sha256 in dev_hashes:
                raise ValueError(
                    f"KASSA_API_KEYS: {key.holder}'s key is a development key; "
                    "development secrets must be replaced outside development"
                )
        if self.allow_sandbox and self.environment == "production":
            raise ValueError(
                "KASSA_ALLOW_SANDBOX is for a staging environment; production never "
                "offers the sandbox gateway"
            )
        dev = {DEV_SANDBOX_SECRET, DEV_SANDBOX_API_KEY, DEV_STOREFRONT_WEBHOOK_SECRET}
        secrets = [("KASSA_STOREFRONT_WEBHOOK_SECRET", self.storefront_webhook_secret)]
        if self.sandbox_enabled:  # a staging environment; otherwise its secrets are unused
            if not self.sandbox_webhook_secrets:
                raise ValueError("KASSA_SANDBOX_WEBHOOK_SECRETS must name at least one secret")
            secrets += [
                ("KASSA_SANDBOX_API_KEY", self.sandbox_api_key),
                *(("KASSA_SANDBOX_WEBHOOK_SECRETS", s) for s in self.sandbox_webhook_secrets),
            ]
        for name, secret in secrets:
            value = secret.get_secret_value()
            if value in dev:
                raise ValueError(
                    f"{name}: development secrets must be replaced outside development"
                )
            if len(value) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"{name} must be at least {MIN_SECRET_LENGTH} characters outside development"
                )
        _check_whsec(self.storefront_webhook_secret.get_secret_value())
        if not self.payload_keys:
            raise ValueError(
                "KASSA_PAYLOAD_KEYS must configure the payload encryption keys outside "
                "development (Temporal would otherwise store order and customer data in clear)"
            )
        # The emulator's address is no place for money outside development: Alipay's own
        # gateway unless another (its sandbox) is set.
        if "alipay_gateway_url" not in self.model_fields_set:
            self.alipay_gateway_url = ALIPAY_GATEWAY_URL
        for name, url in (
            ("KASSA_STOREFRONT_WEBHOOK_URL", self.storefront_webhook_url),
            ("KASSA_PUBLIC_API_URL", self.public_api_url),  # gateways' callbacks go there
            ("KASSA_ALIPAY_GATEWAY_URL", self.alipay_gateway_url),
        ):
            if url is not None and not url.lower().startswith("https://"):
                raise ValueError(f"{name} must be https outside development")
        return self


def _check_whsec(secret: str) -> None:
    """A Standard Webhooks secret: "whsec_" + base64 of at least MIN_WEBHOOK_KEY_BYTES."""
    prefix, _, encoded = secret.partition("_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if prefix != "whsec" or len(key) < MIN_WEBHOOK_KEY_BYTES:
        raise ValueError(
            "KASSA_STOREFRONT_WEBHOOK_SECRET must be whsec_ followed by the base64 of at "
            f"least {MIN_WEBHOOK_KEY_BYTES} random bytes"
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
