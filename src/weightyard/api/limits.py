"""Rate limiting as pure ASGI middleware (installed only when a limit is configured)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from weightyard.api.common import error_response
from weightyard.auth import RateLimiter, hash_secret
from weightyard.errors import RateLimited


class RateLimitMiddleware:
    """One bucket per token (by its hash), or per client address for anonymous requests."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self._app = app
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        client = scope.get("client") or ("", 0)
        key = "token:" + hash_secret(authorization) if authorization else f"addr:{client[0]}"
        try:
            self._limiter.check(key)
        except RateLimited as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self._app(scope, receive, send)
