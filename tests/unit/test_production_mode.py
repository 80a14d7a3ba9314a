"""Production mode (KASSA_ENVIRONMENT other than development): Kassa refuses to start on
anything only fit for development, API keys are hashed and name their holder, and no
secret is printed, logged or repr'd."""

from __future__ import annotations

import base64
import io
import json
import secrets

import pytest
from pydantic import ValidationError

from api.deps import _caller, _support
from kassa.errors import SupportOnly, Unauthorized
from kassa.settings import (
    ALIPAY_GATEWAY_URL,
    DEV_ALIPAY_GATEWAY_URL,
    DEV_STOREFRONT_KEY,
    DEV_STOREFRONT_WEBHOOK_SECRET,
    DEV_SUPPORT_KEY,
    Settings,
    key_hash,
)
from kassa.statuses import Authenticated, Caller
from tooling.cli import keys_hash
from tooling.devstack import _without_password, api_keys_line

SHOP_KEY = "sk_live_" + "s" * 40
SHOP_KEY_NEXT = "sk_live_" + "n" * 40
ALICE_KEY = "sk_live_" + "a" * 40
STRONG = "x" * 40
WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
PAYLOAD_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def production(**overrides) -> dict:
    """Settings a production deployment may start with; overrides spoil one of them."""
    return {
        "environment": "production",
        "api_keys": [
            {"holder": "shop-web", "role": "storefront", "sha256": key_hash(SHOP_KEY)},
            {"holder": "alice", "role": "support", "sha256": key_hash(ALICE_KEY)},
        ],
        "storefront_webhook_secret": WHSEC,
        "storefront_webhook_url": "https://shop.example/hooks",
        "public_api_url": "https://pay.shop.example",
        "payload_keys": {"2026-11": PAYLOAD_KEY},
        **overrides,
    }


def staging(**overrides) -> dict:
    """A staging environment that offers the sandbox gateway, and so needs its secrets."""
    sandbox = {"sandbox_api_key": STRONG, "sandbox_webhook_secrets": [STRONG]}
    return production(environment="staging", allow_sandbox=True, **{**sandbox, **overrides})


def test_a_production_configuration_starts():
    settings = Settings(**production())
    assert not settings.sandbox_enabled
    assert [k.holder for k in settings.accepted_api_keys()] == ["shop-web", "alice"]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"api_keys": []}, "KASSA_API_KEYS"),
        (
            {"api_keys": [{"holder": "x", "role": "support", "sha256": key_hash(DEV_SUPPORT_KEY)}]},
            "KASSA_API_KEYS",
        ),
        ({"storefront_webhook_secret": DEV_STOREFRONT_WEBHOOK_SECRET}, "WEBHOOK_SECRET"),
        ({"storefront_webhook_secret": "x" * 40}, "KASSA_STOREFRONT_WEBHOOK_SECRET"),
        ({"storefront_webhook_secret": "whsec_" + "!" * 40}, "KASSA_STOREFRONT_WEBHOOK_SECRET"),
        (  # base64 of only 16 bytes
            {"storefront_webhook_secret": "whsec_" + base64.b64encode(b"k" * 16).decode() * 2},
            "KASSA_STOREFRONT_WEBHOOK_SECRET",
        ),
        ({"storefront_webhook_url": "http://shop.example/hooks"}, "KASSA_STOREFRONT_WEBHOOK_URL"),
        ({"allow_sandbox": True}, "KASSA_ALLOW_SANDBOX"),
        ({"payload_keys": {}}, "KASSA_PAYLOAD_KEYS"),
        ({"public_api_url": "http://pay.shop.example"}, "KASSA_PUBLIC_API_URL"),
        ({"alipay_gateway_url": DEV_ALIPAY_GATEWAY_URL}, "KASSA_ALIPAY_GATEWAY_URL"),
    ],
)
def test_production_refuses_to_start_naming_the_setting(overrides, names):
    with pytest.raises(ValidationError, match=names) as refused:
        Settings(**production(**overrides))
    assert STRONG not in str(refused.value)  # the error names the setting, not the values
    assert WHSEC not in str(refused.value) and PAYLOAD_KEY not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"sandbox_webhook_secrets": [""]}, "KASSA_SANDBOX_WEBHOOK_SECRETS"),
        ({"sandbox_webhook_secrets": [STRONG, "short"]}, "KASSA_SANDBOX_WEBHOOK_SECRETS"),
        ({"sandbox_webhook_secrets": []}, "KASSA_SANDBOX_WEBHOOK_SECRETS"),
        ({"sandbox_webhook_secrets": ["sandbox_whsec_dev"]}, "KASSA_SANDBOX_WEBHOOK_SECRETS"),
        ({"sandbox_api_key": ""}, "KASSA_SANDBOX_API_KEY"),
        ({"sandbox_api_key": "sandbox_sk_dev"}, "KASSA_SANDBOX_API_KEY"),
    ],
)
def test_staging_with_the_sandbox_refuses_weak_sandbox_secrets(overrides, names):
    with pytest.raises(ValidationError, match=names) as refused:
        Settings(**staging(**overrides))
    assert STRONG not in str(refused.value)


def test_production_needs_no_secrets_of_the_sandbox_it_never_offers():
    settings = Settings(**production())  # the development sandbox secrets, unused
    assert settings.sandbox_api_key.get_secret_value() == "sandbox_sk_dev"
    assert not settings.sandbox_enabled


def test_development_secrets_are_refused_outside_development():
    with pytest.raises(ValidationError, match="KASSA_API_KEYS"):
        Settings(environment="production")
    keyed = staging(storefront_webhook_secret=DEV_STOREFRONT_WEBHOOK_SECRET)
    with pytest.raises(ValidationError, match="development secrets"):
        Settings(**keyed)


def test_refusals_come_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("KASSA_ENVIRONMENT", "staging")
    monkeypatch.setenv("KASSA_ALLOW_SANDBOX", "true")
    monkeypatch.setenv("KASSA_API_KEYS", json.dumps(production()["api_keys"]))
    monkeypatch.setenv("KASSA_SANDBOX_API_KEY", STRONG)
    monkeypatch.setenv("KASSA_STOREFRONT_WEBHOOK_SECRET", WHSEC)
    monkeypatch.setenv("KASSA_PUBLIC_API_URL", "https://pay.shop.example")
    monkeypatch.setenv("KASSA_PAYLOAD_KEYS", json.dumps({"2026-11": PAYLOAD_KEY}))
    monkeypatch.setenv("KASSA_SANDBOX_WEBHOOK_SECRETS", '[""]')
    with pytest.raises(ValidationError, match="KASSA_SANDBOX_WEBHOOK_SECRETS"):
        Settings()
    monkeypatch.setenv("KASSA_SANDBOX_WEBHOOK_SECRETS", json.dumps([STRONG]))
    assert Settings().api_keys[0].holder == "shop-web"


def test_production_payments_go_to_alipay_itself_over_https():
    assert Settings().alipay_gateway_url == DEV_ALIPAY_GATEWAY_URL  # the emulator's
    assert Settings(**production()).alipay_gateway_url == ALIPAY_GATEWAY_URL
    sandbox = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
    staging = Settings(**production(environment="staging", alipay_gateway_url=sandbox))
    assert staging.alipay_gateway_url == sandbox


def test_production_requires_payload_encryption(monkeypatch):
    monkeypatch.setenv("KASSA_PAYLOAD_KEYS", "{}")
    with pytest.raises(ValidationError, match="KASSA_PAYLOAD_KEYS must configure"):
        Settings(**{k: v for k, v in production().items() if k != "payload_keys"})
    assert Settings().payload_keys == {}  # development may run without


def test_a_staging_environment_may_allow_the_sandbox():
    settings = Settings(**staging())
    assert settings.sandbox_enabled
    assert not Settings(**production(environment="staging")).sandbox_enabled


def test_api_keys_are_hashes_and_never_twice():
    with pytest.raises(ValidationError, match="sha256"):
        Settings(api_keys=[{"holder": "shop", "role": "storefront", "sha256": SHOP_KEY}])
    with pytest.raises(ValidationError, match="role"):
        Settings(api_keys=[{"holder": "shop", "role": "admin", "sha256": key_hash(SHOP_KEY)}])
    twice = {"holder": "shop", "role": "storefront", "sha256": key_hash(SHOP_KEY)}
    with pytest.raises(ValidationError, match="twice"):
        Settings(api_keys=[twice, {**twice, "holder": "other"}])


def test_repr_and_dumps_hide_the_secrets():
    settings = Settings(**staging(database_url="postgresql://kassa:pgpassword@db/kassa"))
    shown = repr(settings) + str(settings)
    for secret in (STRONG, WHSEC, PAYLOAD_KEY, key_hash(SHOP_KEY), "pgpassword"):
        assert secret not in shown
    dumped = f"{settings.model_dump()} {settings.model_dump_json()}"
    assert STRONG not in dumped and WHSEC not in dumped and PAYLOAD_KEY not in dumped
    dev = Settings()
    assert "sandbox_whsec_dev" not in repr(dev) and DEV_STOREFRONT_WEBHOOK_SECRET not in repr(dev)


def caller(settings: Settings, key: str | None) -> Authenticated:
    return _caller(settings, None, authorization=None if key is None else f"Bearer {key}")


def test_several_keys_per_role_each_naming_its_holder():
    rotating = production()
    rotating["api_keys"].append(
        {"holder": "shop-web-next", "role": "storefront", "sha256": key_hash(SHOP_KEY_NEXT)}
    )
    settings = Settings(**rotating)
    assert caller(settings, SHOP_KEY) == Authenticated(Caller.STOREFRONT, "shop-web")
    assert caller(settings, SHOP_KEY_NEXT) == Authenticated(Caller.STOREFRONT, "shop-web-next")
    alice = caller(settings, ALICE_KEY)
    assert (alice.role, alice.holder, alice.who, str(alice)) == (
        Caller.SUPPORT,
        "alice",
        "support:alice",
        "support",
    )
    assert _support(alice) is alice
    with pytest.raises(SupportOnly):
        _support(caller(settings, SHOP_KEY))
    for wrong in (None, "", DEV_STOREFRONT_KEY, key_hash(SHOP_KEY), SHOP_KEY + "x"):
        with pytest.raises(Unauthorized):
            caller(settings, wrong)


def test_development_accepts_the_dev_keys_until_keys_are_configured():
    dev = Settings()
    assert caller(dev, DEV_STOREFRONT_KEY) == Authenticated(Caller.STOREFRONT, "dev-storefront")
    assert caller(dev, DEV_SUPPORT_KEY) == Authenticated(Caller.SUPPORT, "dev-support")
    configured = Settings(api_keys=production()["api_keys"])
    assert caller(configured, SHOP_KEY).holder == "shop-web"
    with pytest.raises(Unauthorized):
        caller(configured, DEV_STOREFRONT_KEY)


def test_keys_hash_prints_the_sha256_of_the_key_on_stdin(capsys):
    assert keys_hash(io.StringIO(SHOP_KEY + "\n")) == 0
    assert capsys.readouterr().out.strip() == key_hash(SHOP_KEY)
    assert keys_hash(io.StringIO("short\n")) == 2
    assert "short" not in capsys.readouterr().out


def test_kassa_run_prints_api_keys_only_in_development():
    assert DEV_STOREFRONT_KEY in api_keys_line(Settings())
    configured = api_keys_line(Settings(**production()))
    assert "shop-web (storefront)" in configured and "alice (support)" in configured
    for key in (SHOP_KEY, ALICE_KEY, key_hash(SHOP_KEY)):
        assert key not in configured
    dev_configured = api_keys_line(Settings(api_keys=production()["api_keys"]))
    assert DEV_STOREFRONT_KEY not in dev_configured and SHOP_KEY not in dev_configured


def test_the_emulators_refuse_to_start_outside_development(monkeypatch, tmp_path):
    from gateways.emulators.alipay import AlipayConfig
    from gateways.emulators.alipay import create_app as create_alipay
    from gateways.emulators.sandbox import SandboxConfig
    from gateways.emulators.sandbox import create_app as create_sandbox

    sandbox = SandboxConfig("http://127.0.0.1:1", "k", "s", state_file=tmp_path / "s.json")
    alipay = AlipayConfig(public_url="http://127.0.0.1:1", keys_dir=tmp_path / "keys")
    monkeypatch.setenv("KASSA_ENVIRONMENT", "production")
    for build in (lambda: create_sandbox(sandbox), lambda: create_alipay(alipay)):
        with pytest.raises(RuntimeError, match="only in development"):
            build()
    assert not (tmp_path / "keys").exists()  # refused before writing any development keys
    monkeypatch.setenv("KASSA_ENVIRONMENT", "development")
    assert any(path.startswith("/_emulator") for path in create_sandbox(sandbox).openapi()["paths"])


def test_kassa_run_prints_no_database_password():
    embedded = "postgresql://postgres:@/kassa?host=/tmp/.kassa/pgdata"
    assert _without_password(embedded) == embedded
    assert _without_password("postgresql://kassa:pgpassword@db/kassa") == (
        "postgresql://kassa:***@db/kassa"
    )
