"""Kassa as docker-compose.yml runs it, without Docker: every Kassa process in production mode
on real generated secrets (hashed API keys, a storefront webhook secret, two payload keys,
Alipay's RSA keys), PostgreSQL and Temporal reached by address (the suite's embedded servers
stand in), `kassa migrate` and `kassa temporal setup` as the one-shots (a fresh namespace),
the API as two processes (uvicorn --workers 2) and two worker processes, all over TLS to the
gateway and the storefront, as production mode requires: a throwaway CA signs the
certificates, and SSL_CERT_FILE makes the processes trust it. The gateway is the Alipay
emulator in its own process (the sandbox is refused in production; the emulator is a
development tool, so it alone runs in development mode).

A batch of checkouts is paid through the public API and the emulator's buyer; one worker is
killed with SIGKILL halfway. Every order ends fulfilled, each captured once at the gateway,
the storefront told, Temporal holds only ciphertext, and `kassa ledger check` finds nothing.

    KASSA_PRODUCTION_CHECKOUTS=20 .venv/bin/pytest -s tests/e2e/test_production_shape.py
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.engine import make_url
from temporalio.client import Client

from gateways import alipay_protocol
from gateways.emulators.alipay import ensure_keys
from kassa.ids import checkout_workflow_id
from kassa.settings import DEV_STOREFRONT_KEY, key_hash
from orchestration.codec import ENCODING
from tests.support import BIN, StorefrontReceiver, eventually, free_port, serving

CHECKOUTS = int(os.environ.get("KASSA_PRODUCTION_CHECKOUTS", "12"))
PY = sys.executable
KASSA = str(BIN / "kassa")


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate it signs for 127.0.0.1 and localhost: the CA's
    file, the certificate's and its key's."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kassa test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Server:
    """A process of the stack in a session of its own (uvicorn's workers die with it), its
    output in `log` for the post-mortem."""

    def __init__(self, name: str, command: list[str], env: dict, log: Path):
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.name} exited by itself ({self.proc.returncode}): {self.log.read_text()}"
            )
        return True

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def stop(servers: list[Server], grace: float = 5.0) -> None:
    """SIGTERM to all at once, SIGKILL to whatever still runs after `grace` seconds (a TLS
    server waits up to 30 s for a close_notify that a client's idle pooled connection never
    sends)."""
    running = [server for server in servers if server.proc.poll() is None]
    for server in running:
        os.killpg(server.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for server in running:
        try:
            server.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.kill()


def one_shot(name: str, command: list[str], env: dict, log: Path) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{name} failed ({done.returncode}): {done.stdout}{done.stderr}"
    return done.stdout


def uvicorn(app: str, port: int, cert: Path, key: Path) -> list[str]:
    return [
        *(PY, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port)),
        *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning"),
    ]


def spawned_children(pid: int) -> int:
    """How many of `pid`'s children are multiprocessing-spawned (uvicorn's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes() for child in children)


async def new_database(url: str) -> str:
    """A database of its own on the suite's PostgreSQL: the session's ledger audit checks
    the suite's orders against the suite's emulators, these against this emulator."""
    name = f"kassa_prod_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def test_production_shaped_stack_survives_a_killed_worker(dev_env, database_url, tmp_path):
    started = time.monotonic()
    ca, cert, tls_key = tls_files(tmp_path)
    https = httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca), timeout=30)
    ports = {name: free_port() for name in ("api", "alipay", "storefront")}

    # The secrets, made as docs/deploy.md says.
    storefront_key, support_key = (f"sk_live_{secrets.token_urlsafe(32)}" for _ in range(2))
    webhook_secret = f"whsec_{random_key()}"
    # Alipay's keys: the emulator keeps its own; Kassa gets only the merchant's private key,
    # Alipay's public key and the app id, in a folder of its own.
    emulator_dir = tmp_path / "emulator"
    ensure_keys(emulator_dir / "keys" / "alipay")
    alipay_keys = tmp_path / "alipay-keys"
    alipay_keys.mkdir()
    for name in ("merchant_private.pem", "gateway_public.pem", "settings.json"):
        shutil.copy(emulator_dir / "keys" / "alipay" / name, alipay_keys / name)

    clean = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    clean = {k: v for k, v in clean.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    namespace = f"kassa-prod-{uuid.uuid4().hex[:8]}"
    temporal_address = dev_env.client.service_client.config.target_host
    kassa_env = clean | {
        "KASSA_ENVIRONMENT": "production",
        "SSL_CERT_FILE": str(ca),  # httpx (trust_env) trusts the throwaway CA only
        "DATABASE_URL": await new_database(database_url),
        "TEMPORAL_ADDRESS": temporal_address,
        "KASSA_TEMPORAL_NAMESPACE": namespace,
        "KASSA_PUBLIC_API_URL": f"https://127.0.0.1:{ports['api']}",
        "KASSA_API_KEYS": json.dumps(
            [
                {"holder": "shop-web", "role": "storefront", "sha256": key_hash(storefront_key)},
                {"holder": "support-desk", "role": "support", "sha256": key_hash(support_key)},
            ]
        ),
        # Two keys, as after a rotation: the first encrypts.
        "KASSA_PAYLOAD_KEYS": json.dumps({"2026-11": random_key(), "2026-05": random_key()}),
        "KASSA_STOREFRONT_WEBHOOK_URL": f"https://127.0.0.1:{ports['storefront']}/hooks",
        "KASSA_STOREFRONT_WEBHOOK_SECRET": webhook_secret,
        "KASSA_ALIPAY_GATEWAY_URL": f"https://127.0.0.1:{ports['alipay']}/gateway.do",
        "KASSA_ALIPAY_KEYS_DIR": str(alipay_keys),
    }
    emulator_env = clean | {
        "KASSA_ENVIRONMENT": "development",  # the emulators refuse any other
        "SSL_CERT_FILE": str(ca),  # its notifies go to the API over https
        "KASSA_DATA_DIR": str(emulator_dir),
        "KASSA_ALIPAY_PORT": str(ports["alipay"]),
        "KASSA_ALIPAY_URL": f"https://127.0.0.1:{ports['alipay']}",
    }
    alipay_url = emulator_env["KASSA_ALIPAY_URL"]
    api_url = kassa_env["KASSA_PUBLIC_API_URL"]

    receiver = StorefrontReceiver(webhook_secret)
    servers: list[Server] = []
    tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(tls_key)}
    async with https, serving(receiver.app, ports["storefront"], **tls):
        try:
            # The one-shots, before any API or worker starts (as in docker-compose.yml).
            one_shot("kassa migrate", [KASSA, "migrate"], kassa_env, tmp_path / "migrate.log")
            setup = one_shot(
                "kassa temporal setup",
                [KASSA, "temporal", "setup"],
                kassa_env,
                tmp_path / "temporal-setup.log",
            )
            assert f"namespace {namespace}: registered" in setup, setup

            alipay = Server(
                "the Alipay emulator",
                uvicorn("gateways.emulators.alipay:app_from_env", ports["alipay"], cert, tls_key),
                emulator_env,
                tmp_path / "alipay.log",
            )
            api = Server(
                "the API",
                uvicorn("api.app:create_app", ports["api"], cert, tls_key),
                kassa_env | {"WEB_CONCURRENCY": "2"},  # as docker-compose.yml runs it
                tmp_path / "api.log",
            )
            # Two workers on one host: each serves its metrics on ports of its own (in
            # docker-compose.yml each has its own network, and the defaults do).
            workers = [
                Server(
                    f"worker {n}",
                    [PY, "-m", "worker"],
                    kassa_env
                    | {
                        "KASSA_WORKER_METRICS_PORT": str(free_port()),
                        "KASSA_TEMPORAL_METRICS_PORT": str(free_port()),
                    },
                    tmp_path / f"worker{n}.log",
                )
                for n in (1, 2)
            ]
            servers += [alipay, api, *workers]

            async def answers(server: Server, url: str) -> bool:
                server.alive()
                try:
                    return (await https.get(url)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(lambda: answers(alipay, f"{alipay_url}/_emulator/state"), 60)
            await eventually(lambda: answers(api, f"{api_url}/healthz"), 60)
            assert spawned_children(api.proc.pid) == 2  # two API processes behind one port
            ready = time.monotonic()

            orders = await run_checkouts(https, api_url, alipay_url, storefront_key, workers)
            settled = time.monotonic()
            for server in (alipay, api, workers[1]):
                server.alive()

            # Captured once per order at the gateway, each for the order's amount.
            state = (await https.get(f"{alipay_url}/_emulator/state")).json()
            for order_id, amount in orders.items():
                trades = [
                    t
                    for t in state["trades"].values()
                    if t["out_trade_no"] == alipay_protocol.out_trade_no(order_id, 1)
                ]
                assert [(t["status"], t["total_amount"]) for t in trades] == [
                    ("TRADE_SUCCESS", f"{amount / 100:.2f}")
                ], (order_id, trades)
            assert len(state["trades"]) == len(orders)

            # The storefront hears of every fulfilment, signed and over TLS (a webhook the
            # killed worker was sending goes again when its activity times out, 30 s).
            def told() -> set[str]:
                fulfilled = "order.fulfilled"
                hooks = [r["payload"] for r in receiver.received]
                return {h["data"]["order_id"] for h in hooks if h["type"] == fulfilled}

            await eventually(lambda: told() == set(orders), timeout=60)

            # Only the generated keys open the API: support reads an order's books, captured
            # once; the development keys are refused.
            order_id, amount = next(iter(orders.items()))
            books = await https.get(
                f"{api_url}/v1/orders/{order_id}/ledger",
                headers={"Authorization": f"Bearer {support_key}"},
            )
            assert [
                (t["kind"], [e["amount"] for e in t["entries"]])
                for t in books.json()["transactions"]
            ] == [("capture", [amount, -amount])], books.text
            dev = {"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
            refused = await https.get(f"{api_url}/v1/orders/{order_id}", headers=dev)
            assert refused.status_code == 401

            # Temporal holds ciphertext only: the history of a checkout, read without keys.
            plain = await Client.connect(temporal_address, namespace=namespace)
            history = await plain.get_workflow_handle(
                checkout_workflow_id(order_id)
            ).fetch_history()
            started_event = history.events[0].workflow_execution_started_event_attributes
            assert [p.metadata["encoding"] for p in started_event.input.payloads] == [ENCODING]

            ledger = one_shot(
                "kassa ledger check",
                [KASSA, "ledger", "check"],
                kassa_env,
                tmp_path / "ledger-check.log",
            )
            assert ledger.strip().endswith("ledger check: 0 violation(s)"), ledger
            checked = time.monotonic()
        finally:  # before the storefront's server stops: it waits for their connections
            stop(servers)
    print(
        f"\nproduction shape: {len(orders)} checkouts fulfilled over TLS with a worker "
        f"SIGKILLed halfway; start-up {ready - started:.1f}s, checkouts "
        f"{settled - ready:.1f}s, checks {checked - settled:.1f}s, "
        f"total {time.monotonic() - started:.1f}s"
    )


async def run_checkouts(
    https: httpx.AsyncClient,
    api_url: str,
    alipay_url: str,
    storefront_key: str,
    workers: list[Server],
) -> dict[str, int]:
    """Start CHECKOUTS checkouts through the API, the buyers pay half of them, a worker is
    SIGKILLed, the buyers pay the rest; returns {order_id: amount} once all are fulfilled."""
    auth = {"Authorization": f"Bearer {storefront_key}"}
    run = uuid.uuid4().hex[:6]

    async def start(n: int) -> dict:
        body = {
            "order_id": f"prod-{run}-{n}",
            "customer_id": f"cus_{run}_{n}",  # the velocity limit counts per customer
            "currency": "CNY",
            "gateway": "alipay",
            "items": [{"sku": "go-101", "title": "Go 101", "unit_amount": 1000 + n, "quantity": 1}],
        }
        headers = auth | {"Idempotency-Key": f"checkout-{run}-{n}"}
        answer = await https.post(f"{api_url}/v1/checkouts", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def pay(checkout: dict) -> None:
        qr = checkout["payment"]["action"]["qr"]
        paid = await https.post(
            f"{alipay_url}/_emulator/buyer", json={"payment": qr, "outcome": "succeeded"}
        )
        assert paid.status_code == 200, paid.text

    async def status(order_id: str) -> str:
        answer = await https.get(f"{api_url}/v1/orders/{order_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        return answer.json()["status"]

    checkouts = await asyncio.gather(*(start(n) for n in range(CHECKOUTS)))
    assert {c["status"] for c in checkouts} == {"awaiting_payment"}
    half = CHECKOUTS // 2
    await asyncio.gather(*(pay(c) for c in checkouts[:half]))
    await asyncio.sleep(0.3)  # callbacks arrive, fulfilments start on both workers
    workers[0].alive()
    workers[0].kill()
    await asyncio.gather(*(pay(c) for c in checkouts[half:]))

    async def all_fulfilled() -> bool:
        workers[1].alive()
        statuses = await asyncio.gather(*(status(c["order_id"]) for c in checkouts))
        assert not set(statuses) - {"awaiting_payment", "paid", "fulfilled"}, statuses
        return set(statuses) == {"fulfilled"}

    await eventually(all_fulfilled, timeout=90, interval=0.5)
    return {c["order_id"]: c["amount"] for c in checkouts}
