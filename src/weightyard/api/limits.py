"""Rate limiting as pure ASGI middleware (installed only when a limit is configured)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from weightyard.api.common import error_response, principal_of
from weightyard.auth import RateLimiter
from weightyard.errors import InvalidCredentials, RateLimited


def _limit_key(request: Request) -> str:
    """The bucket of a request: the token that authenticates it, else the client's address.

    The token is found the way every route finds it (`principal_of`), so respelling the header (`bearer`,
    `BEARER`, extra spaces) lands in the same bucket, and a made-up or revoked token counts against the
    address it comes from rather than opening a fresh bucket per guess.
    """
    try:
        principal = principal_of(request)
    except InvalidCredentials:
        principal = None
    if principal is not None:
        return f"token:{principal.user_id}:{principal.token_name}"
    return f"addr:{request.client.host if request.client else ''}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self._app = app
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope)

        def check() -> None:
            self._limiter.check(_limit_key(request))

        try:
            await run_in_threadpool(check)
        except RateLimited as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self._app(scope, receive, send)
