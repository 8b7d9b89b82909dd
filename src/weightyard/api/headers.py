"""Headers every response carries, whatever route (or error handler) produced it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NOSNIFF = (b"x-content-type-options", b"nosniff")


def with_header(message: Message, name: bytes, value: bytes) -> Message:
    """`message` with the header `name` (lower-case) set to `value` if it starts a response, else as it is."""
    if message["type"] != "http.response.start":
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != name]
    return {**message, "headers": [*headers, (name, value)]}


class NoSniffMiddleware:
    """`X-Content-Type-Options: nosniff` on every response.

    Downloads (`/resolve`, raw file pages, CAS fetches) send uploaded bytes as they are: without this a
    browser may sniff a file served as `text/plain` or `application/octet-stream` as HTML or script and run
    it with the hub's origin. Setting it once here covers every route, present and future.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_nosniff(message: Message) -> None:
            await send(with_header(message, *_NOSNIFF))

        await self._app(scope, receive, send_with_nosniff)
