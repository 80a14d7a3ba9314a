"""Payload encryption end to end, on a real Temporal server: a checkout run by a client and a
worker with the codec leaves a history that Temporal (and anyone reading it without the key)
sees as ciphertext, and the codec server gives support the payloads back, with the support
key only."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import httpx
import pytest_asyncio
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from kassa.contracts import CancelRequest
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY
from kassa.statuses import OrderStatus
from orchestration.codec import ENCODING, KEY_ID
from orchestration.temporal import data_converter
from tests.support import free_port, new_checkout, serving
from tooling.codec_server import create_app as create_codec_server
from workflows.checkout import CheckoutWorkflow

KEYS = {
    "2026-11": base64.b64encode(os.urandom(32)).decode(),
    "2026-05": base64.b64encode(os.urandom(32)).decode(),
}
UI = "http://localhost:8233"


@dataclass
class KeyedEnv:
    client: Client  # what `started` runs its worker and starts its checkouts with
    plain: Client  # the same server without the keys


@pytest_asyncio.fixture
async def keyed_settings(settings):
    keys = {key_id: SecretStr(key) for key_id, key in KEYS.items()}
    return settings.model_copy(update={"payload_keys": keys, "codec_cors_origins": [UI]})


@pytest_asyncio.fixture
async def workflow_env(time_skipping_env, keyed_settings):
    plain = time_skipping_env.client
    keyed = Client(**{**plain.config(), "data_converter": data_converter(keyed_settings)})
    return KeyedEnv(keyed, plain)


@pytest_asyncio.fixture
async def codec_server(keyed_settings):
    async with serving(create_codec_server(keyed_settings), free_port()) as url:
        yield url


def as_json(payloads) -> dict:
    return json_format.MessageToDict(Payloads(payloads=payloads))


async def test_history_is_encrypted_and_the_codec_server_decodes_it(
    started, workflow_env, keyed_settings, codec_server
):
    checkout = new_checkout()
    view, handle = await started(checkout)
    assert view.status == OrderStatus.AWAITING_PAYMENT  # the worker decoded and encoded
    ended = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("buyer left", "storefront:shop")
    )
    assert ended.status == OrderStatus.CANCELLED
    assert (await handle.result()).status == OrderStatus.CANCELLED

    # Read without the key, Temporal's copy is ciphertext: input, results, updates.
    history = await workflow_env.plain.get_workflow_handle(handle.id).fetch_history()
    started_event = history.events[0].workflow_execution_started_event_attributes
    [sealed] = started_event.input.payloads
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"2026-11"
    assert checkout.order_id.encode() not in sealed.data
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert [p.metadata["encoding"] for p in completed.result.payloads] == [ENCODING]
    # (Search attributes, OrderId and the others, stay readable: they are how support finds
    # a checkout, and Temporal must index them.)

    async with httpx.AsyncClient(base_url=codec_server) as http:
        support = {
            "Authorization": f"Bearer {DEV_SUPPORT_KEY}",
            "X-Namespace": keyed_settings.temporal_namespace,
        }
        answer = await http.post("/decode", json=as_json([sealed]), headers=support)
        assert answer.status_code == 200, answer.text
        [decoded] = json_format.ParseDict(answer.json(), Payloads()).payloads
        assert decoded.metadata["encoding"] == b"json/plain"
        assert checkout.order_id.encode() in decoded.data

        # Encoding through it seals with the current key, and that decodes again.
        answer = await http.post("/encode", json=as_json([decoded]), headers=support)
        [resealed] = json_format.ParseDict(answer.json(), Payloads()).payloads
        assert resealed.metadata[KEY_ID] == b"2026-11"
        assert checkout.order_id.encode() not in resealed.data

        for headers in (
            {},
            {"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"},
            {"Authorization": "Bearer nope"},
        ):
            refused = await http.post("/decode", json=as_json([sealed]), headers=headers)
            assert refused.status_code == 401
            assert "payloads" not in refused.json()

        other_namespace = {**support, "X-Namespace": "someone-else"}
        answer = await http.post("/decode", json=as_json([sealed]), headers=other_namespace)
        assert answer.status_code == 403


async def test_the_codec_server_answers_the_ui_origin_only(codec_server):
    async with httpx.AsyncClient(base_url=codec_server) as http:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        }
        allowed = await http.options("/decode", headers={"Origin": UI, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == UI
        assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
        other = await http.options(
            "/decode", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_the_codec_server_says_which_key_it_lacks(keyed_settings, codec_server):
    codec = data_converter(
        keyed_settings.model_copy(
            update={
                "payload_keys": {"2025-01": SecretStr(base64.b64encode(os.urandom(32)).decode())}
            }
        )
    ).payload_codec
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"{}")])
    async with httpx.AsyncClient(base_url=codec_server) as http:
        answer = await http.post(
            "/decode",
            json=as_json([sealed]),
            headers={"Authorization": f"Bearer {DEV_SUPPORT_KEY}"},
        )
    assert answer.status_code == 400
    assert "2025-01" in answer.json()["message"]
