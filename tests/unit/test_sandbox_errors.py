"""How the sandbox adapter reads the gateway's refusals (a fake transport, in addition to
the tests over real HTTP in tests/gateways): "not now" retries, "never" does not."""

import httpx
import pytest

from gateways.base import GatewayError
from gateways.sandbox import SandboxGateway
from kassa.errors import GatewayRejected


def gateway_answering(status: int) -> SandboxGateway:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"code": "x"}))
    return SandboxGateway(httpx.AsyncClient(transport=transport), "http://gw", "k", ["s"])


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
async def test_not_now_is_retried(status):
    with pytest.raises(GatewayError) as raised:
        await gateway_answering(status).get_payment("ord_1")
    assert not isinstance(raised.value, GatewayRejected)


@pytest.mark.parametrize("status", [400, 401, 404, 409])
async def test_never_is_permanent(status):
    with pytest.raises(GatewayRejected):
        await gateway_answering(status).get_payment("ord_1")
