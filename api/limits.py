"""Refuse oversize request bodies before anything parses them (413, nothing written)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import answer
from kassa.errors import BodyTooLarge


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing lets it through unchanged."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is over {max_bytes} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            too_large = BodyTooLarge(f"The request body is over {self.max_bytes} bytes")
            return await answer(too_large)(scope, receive, send)

        seen = 0

        async def counting_receive() -> Message:  # bodies sent without a Content-Length
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
