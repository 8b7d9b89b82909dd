"""An `X-Request-Id` on every response, so a user's error message can be matched with the server's side.

The Hugging Face client appends the id to the errors it raises ("(Request ID: …)"). A caller that sends its
own `X-Request-Id` gets it back, if it is short and plain (it ends up in logs and messages); otherwise the
hub makes one.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weightyard.api.headers import with_header

HEADER = b"x-request-id"
_ACCEPTED = re.compile(rb"^[A-Za-z0-9._:=+/-]{1,128}$")


def request_id(given: bytes | None) -> bytes:
    """The id to answer with: the caller's when it is acceptable, else a new one.

    Example:
        >>> request_id(b"abc-123")
        b'abc-123'
        >>> len(request_id(b"bad id\\r\\nX-Injected: 1"))
        32
    """
    if given is not None and _ACCEPTED.match(given):
        return given
    return uuid.uuid4().hex.encode()


class RequestIdMiddleware:
    """Outermost middleware: every answer carries the id, errors from other middleware included."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = next((value for name, value in scope.get("headers") or [] if name == HEADER), None)
        value = request_id(given)

        async def send_with_id(message: Message) -> None:
            await send(with_header(message, HEADER, value))

        await self._app(scope, receive, send_with_id)
