"""Every request body is bounded while it is read: in size, and in how long it may stall.

The middleware wraps the ASGI `receive` of every request, so the bound holds for each route, present and
future, before the route parses the body or does any authentication work: a body announced (Content-Length)
or found to be larger than the limit fails with 413 after at most one chunk past the limit, and a body that
stops arriving fails with 408. Routes that stream large uploads to storage (commits, LFS objects, Xet
xorbs and shards) raise the size limit for their own request with `allow_body` and bound the content
themselves.

A body read straight from the socket (`zero_copy.RECEIVE`, see `api.common.pump_body`) is held to the same
bounds: the middleware wraps the extension's `take`, which hands over no body announced larger than the
limit (it then comes through `receive`, refused with 413 before a byte is read) and gives the reading the
same idle limit (408). Such a body has a Content-Length and is read to exactly that length, so the limit
on what arrives needs no count.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weightyard import zero_copy
from weightyard.errors import PayloadTooLarge, RequestTimeout

_LIMIT_KEY = "weightyard.body_limit"


def allow_body(request: Request, limit: int | None) -> None:
    """Let this request's body grow to `limit` bytes (None: the route bounds it itself).

    Call it before reading the body.
    """
    request.scope[_LIMIT_KEY] = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, idle_timeout: float) -> None:
        self._app = app
        self._limit = limit
        self._idle_timeout = idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:
                # Past the body, `receive` only reports a disconnect, which may take as long as the response.
                return await receive()
            limit: int | None = scope.get(_LIMIT_KEY, self._limit)
            if received == 0 and limit is not None:
                announced = _content_length(scope)
                if announced is not None and announced > limit:
                    raise PayloadTooLarge(
                        f"the request body ({announced} bytes) is larger than this route's limit of {limit}"
                    )
            try:
                message = await asyncio.wait_for(receive(), self._idle_timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"no part of the request body arrived for {self._idle_timeout:g} seconds"
                ) from None
            if message["type"] != "http.request":
                complete = True
                return message
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if limit is not None and received > limit:
                raise PayloadTooLarge(f"the request body is larger than this route's limit of {limit} bytes")
            return message

        direct = (scope.get("extensions") or {}).get(zero_copy.RECEIVE)
        if direct is not None:
            take = direct["take"]

            def bounded_take(max_length: int | None = None) -> zero_copy.DirectBody | None:
                nonlocal complete
                if received or complete:
                    return None  # part of the body came through `receive`: the rest does too
                limit: int | None = scope.get(_LIMIT_KEY, self._limit)
                if limit is not None and (max_length is None or limit < max_length):
                    max_length = limit
                body: zero_copy.DirectBody | None = take(self._idle_timeout, max_length)
                complete = body is not None
                return body

            scope["extensions"][zero_copy.RECEIVE] = {"take": bounded_take}
        await self._app(scope, bounded_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
