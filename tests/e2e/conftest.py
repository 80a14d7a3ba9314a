"""The end-to-end tests: the whole stack over HTTP (API, Temporal dev server, worker), crash
runs and randomized runs. Every test here is marked `e2e`, so `make test-fast`
(`pytest -m "not e2e"`) leaves them out. After them the books must be right: the ledger
check finds nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateways import build_gateways
from tooling.ledger_check import check as ledger_check

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest_asyncio.fixture(scope="session", autouse=True)
async def ledger_audit(settings, sessions, sandbox, alipay):
    yield
    async with httpx.AsyncClient() as http:
        problems = await ledger_check(sessions, build_gateways(settings, http))
    assert problems == [], "the ledger check found violations:\n" + "\n".join(problems)
