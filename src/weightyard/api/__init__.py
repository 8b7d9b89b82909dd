"""The HTTP application: thin routers over the domain services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from weightyard import __version__
from weightyard.api import access, admin, hf, lfs, provenance, repo_admin, web, xet
from weightyard.api.body_limit import BodyLimitMiddleware
from weightyard.api.common import base_url, error_response, names_a_repo
from weightyard.api.headers import NoSniffMiddleware
from weightyard.api.limits import RateLimitMiddleware
from weightyard.api.request_id import RequestIdMiddleware
from weightyard.errors import BadRequest, NotFound, RepoNotFound, WeightyardError
from weightyard.hub import Hub


def create_app(hub: Hub) -> FastAPI:
    """The hub's ASGI application.

    Example:
        >>> app = create_app(Hub.open(Settings(data=Path("/tmp/wy"))))  # doctest: +SKIP
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Scans run here, in this process's runner threads, never inside a request (docs/scanning.md).
        hub.repos.scans.start_background()
        hub.repos.downloads.start_background()
        hub.repos.copies.start_background()
        try:
            yield
        finally:
            hub.repos.copies.stop_background()
            hub.repos.scans.stop_background()
            hub.repos.downloads.stop_background()
            hub.close()  # saves the last downloads counted; a clean stop leaves the database file complete

    app = FastAPI(
        title="Weightyard",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.hub = hub

    def answer(request: Request, exc: WeightyardError) -> Response:
        xet.log_refusal(request, exc.status, exc.code, exc.message)
        as_text = request.headers.get("accept", "").startswith("text/plain")
        return error_response(exc, base_url(request), as_text)

    @app.exception_handler(WeightyardError)
    async def _domain_error(request: Request, exc: WeightyardError) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, BadRequest(f"invalid request: {exc.errors()[:3]}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            if names_a_repo(request.url.path):
                # e.g. a one-segment id (`gpt2`): the client then says "repository not found", as on the Hub
                return answer(request, RepoNotFound("Repository not found: a repo id is 'namespace/name'"))
            return answer(request, NotFound("Not found"))
        error = WeightyardError(str(exc.detail))
        error.status = exc.status_code
        error.code = "HTTPError"
        return answer(request, error)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> Response:
        # json.JSONDecodeError from request.json() and unquote() on bad UTF-8 land here
        return answer(request, BadRequest(f"malformed request: {exc}"))

    @app.exception_handler(sa.exc.DataError)
    async def _data_error(request: Request, exc: sa.exc.DataError) -> Response:
        # PostgreSQL text cannot hold a NUL character, which SQLite stores and compares: such a value can
        # only have come from the request (an id, a revision, a search), so the request is malformed. Any
        # other refusal of a value stays a server error, to be found and fixed where the value was made.
        if "NUL" not in str(exc.orig):
            raise exc
        return answer(request, BadRequest("malformed request: a NUL character in a value"))

    app.add_middleware(
        BodyLimitMiddleware,
        limit=hub.settings.max_json_body,
        idle_timeout=hub.settings.body_idle_timeout,
    )
    if hub.limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=hub.limiter)
    # Outermost, so refusals by the middlewares above carry it too.
    app.add_middleware(NoSniffMiddleware)
    # Added last, so it is outermost: refusals by the middlewares above carry the id too.
    app.add_middleware(RequestIdMiddleware)
    app.include_router(provenance.router)
    app.include_router(admin.router)
    app.include_router(access.router)
    app.include_router(lfs.router)
    app.include_router(xet.router)
    app.include_router(repo_admin.router)
    app.include_router(hf.router)
    app.include_router(web.router)
    return app
