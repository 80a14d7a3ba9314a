"""How Kassa reaches Temporal, from settings: plain (development), mutual TLS, Temporal Cloud
API key. No TLS server exists here, so these check the arguments `connect` passes."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError
from temporalio.service import TLSConfig

from kassa.settings import Settings
from orchestration.codec import EncryptionCodec
from orchestration.temporal import DATA_CONVERTER, DEFAULT_ADDRESS, connect_options


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    """These read the environment as a deployment would: start from none of it."""
    names = ["TEMPORAL_ADDRESS", "KASSA_TEMPORAL_ADDRESS", "KASSA_TEMPORAL_NAMESPACE"]
    for name in [*names, "KASSA_PAYLOAD_KEYS", "KASSA_TEMPORAL_API_KEY"]:
        monkeypatch.delenv(name, raising=False)
    for name in ("CERT", "KEY", "CA", "SERVER_NAME"):
        monkeypatch.delenv(f"KASSA_TEMPORAL_TLS_{name}", raising=False)


def test_development_is_plain_on_the_local_dev_server():
    options = connect_options(Settings())
    assert options == {
        "target_host": DEFAULT_ADDRESS,
        "namespace": "default",
        "data_converter": DATA_CONVERTER,
        "tls": False,
        "api_key": None,
    }


def test_client_certificates_make_mutual_tls(tmp_path):
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    settings = Settings(
        temporal_address="temporal.internal:7233",
        temporal_namespace="kassa-prod",
        temporal_tls_cert=tmp_path / "client.pem",
        temporal_tls_key=tmp_path / "client.key",
        temporal_tls_ca=tmp_path / "ca.pem",
        temporal_tls_server_name="temporal.internal",
    )
    options = connect_options(settings)
    assert options["target_host"] == "temporal.internal:7233"
    assert options["namespace"] == "kassa-prod"
    assert options["api_key"] is None
    assert options["tls"] == TLSConfig(
        server_root_ca_cert=b"-- ca.pem --",
        domain="temporal.internal",
        client_cert=b"-- client.pem --",
        client_private_key=b"-- client.key --",
    )


def test_client_certificates_without_a_ca_trust_the_system_roots(tmp_path, monkeypatch):
    (tmp_path / "c.pem").write_bytes(b"cert")
    (tmp_path / "c.key").write_bytes(b"key")
    monkeypatch.setenv("KASSA_TEMPORAL_TLS_CERT", str(tmp_path / "c.pem"))
    monkeypatch.setenv("KASSA_TEMPORAL_TLS_KEY", str(tmp_path / "c.key"))
    assert connect_options(Settings())["tls"] == TLSConfig(
        client_cert=b"cert", client_private_key=b"key"
    )


def test_a_certificate_without_its_key_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="go together"):
        Settings(temporal_tls_cert=tmp_path / "c.pem")


def test_a_cloud_api_key_implies_tls(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "kassa.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("KASSA_TEMPORAL_NAMESPACE", "kassa.a1b2c")
    monkeypatch.setenv("KASSA_TEMPORAL_API_KEY", "cloud-key")
    options = connect_options(Settings())
    assert options["target_host"] == "kassa.a1b2c.tmprl.cloud:7233"
    assert options["namespace"] == "kassa.a1b2c"
    assert options["api_key"] == "cloud-key"
    assert options["tls"] is True


def test_payload_keys_put_the_codec_in_the_client():
    key = base64.b64encode(bytes(32)).decode()
    converter = connect_options(Settings(payload_keys={"k1": key}))["data_converter"]
    assert isinstance(converter.payload_codec, EncryptionCodec)
