"""The codec server: Temporal's remote codec protocol, so the Temporal UI (and the `temporal`
CLI) show support the decrypted payloads of Kassa's workflows.

    POST /decode   {"payloads": [{"metadata": {"encoding": "<base64>", …}, "data": "<base64>"}]}
    POST /encode   the same shape, the other way

Payloads are proto-JSON (metadata values and data base64). Each request must carry the
support API key as `Authorization: Bearer <key>`; a request naming another namespace in
`X-Namespace` than Kassa's is refused. CORS lets the Temporal UI's origin(s)
(KASSA_CODEC_CORS_ORIGINS) call it from the browser.

A separate app rather than a router of the API: the API faces the storefront and the
gateways, on the internet; decrypting every payload is support's business, and this server
can be run where only support reaches it (next to the UI), with the payload keys, while the
API's public contract (its OpenAPI, which schemathesis checks) stays as it is. Run it with
`kassa codec-server`."""

from __future__ import annotations

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from kassa.settings import Settings
from orchestration.codec import PayloadKeyError
from orchestration.temporal import payload_codec


def create_app(settings: Settings, codec: PayloadCodec | None = None) -> Starlette:
    """Without payload keys (development) there is nothing to decrypt: payloads come back
    as they were sent."""
    codec = codec or payload_codec(settings)

    def refused(request: Request) -> Response | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        holder = settings.holder_of(key) if scheme.lower() == "bearer" and key else None
        if holder is None or holder.role != "support":
            return JSONResponse(
                {"message": "send the support key: Authorization: Bearer <key>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        namespace = request.headers.get("x-namespace")
        if namespace and namespace != settings.temporal_namespace:
            return JSONResponse(
                {"message": f"this codec serves namespace {settings.temporal_namespace!r}"},
                status_code=403,
            )
        return None

    def endpoint(encode: bool):
        async def handle(request: Request) -> Response:
            if (refusal := refused(request)) is not None:
                return refusal
            payloads = Payloads()
            try:
                json_format.Parse(await request.body(), payloads, ignore_unknown_fields=True)
            except json_format.ParseError as err:
                return JSONResponse({"message": f"not payloads: {err}"}, status_code=400)
            if codec is not None:
                try:
                    if encode:
                        result = await codec.encode(payloads.payloads)
                    else:
                        result = await codec.decode(payloads.payloads)
                except PayloadKeyError as err:
                    return JSONResponse({"message": str(err)}, status_code=400)
                payloads = Payloads(payloads=result)
            return Response(json_format.MessageToJson(payloads), media_type="application/json")

        return handle

    return Starlette(
        routes=[
            Route("/encode", endpoint(encode=True), methods=["POST"]),
            Route("/decode", endpoint(encode=False), methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.codec_cors_origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                allow_credentials=True,
            )
        ],
    )


def run(settings: Settings, host: str = "127.0.0.1") -> int:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=settings.codec_port)
    return 0
