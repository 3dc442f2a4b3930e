"""Request size limit as plain ASGI middleware, so it also covers chunked bodies.

A declared ``Content-Length`` over the limit is answered before the app runs; a body sent
in chunks is counted as it is read, and once over the limit the request is answered 413
whatever the app does with the error it gets reading it.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTooLarge, error_response


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                response = error_response(
                    413, f"request body of {int(value)} bytes exceeds the limit of {limit} bytes"
                )
                await response(scope, receive, send)
                return
        seen = 0
        too_large = False  # set once the body read so far passed the limit
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            """Whatever the app made of the error (FastAPI answers a body it could not read
            with 400), a body over the limit is answered 413."""
            nonlocal answered
            if not too_large:
                await send(message)
                return
            if message["type"] == "http.response.start" and not answered:
                answered = True
                await _too_large(limit)(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if answered:
                return
            answered = True
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> Response:
    return error_response(413, f"request body exceeds the limit of {limit} bytes")
