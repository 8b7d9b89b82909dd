"""Property: whatever a client sends to any route, the answer is never a 5xx.

The routes are read from the app itself (`app.routes`), so a new route is covered the day it is added. Each
route and method gets random path parameters (real names mixed with junk), random query values (for the
parameters it declares and for ones it does not), random JSON or bytes as the body and a random caller,
sent to a real server on 127.0.0.1 that holds a repo, a user and an organisation to find.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support import Server, start_server, stop_server

from weightyard.api import bodies, create_app
from weightyard.config import Settings
from weightyard.hub import Hub

EXAMPLES_PER_ROUTE = 12
_PARAM = re.compile(r"{(\w+)(:path)?}")


def _routes() -> list[tuple[str, str, list[str]]]:
    """(method, path template, declared query parameters) of every HTTP route of the app."""
    with tempfile.TemporaryDirectory() as folder:
        hub = Hub.open(Settings(data=Path(folder), xet=True))
        app = create_app(hub)
        hub.engine.dispose()
    found = []
    for context in iter_route_contexts(app.routes):  # included routers flattened, prefixes applied
        route, path = context.original_route, context.path
        methods = getattr(route, "methods", None)
        if path is None or not methods:
            continue
        query = [p.alias for p in route.dependant.query_params] if isinstance(route, APIRoute) else []
        found.extend((method, path, query) for method in sorted(methods))
    return found


ROUTES = _routes()


def _is_body(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, bodies.Body) and value is not bodies.Body


# Field names of the typed bodies, so random JSON often reaches the validation of real fields.
FIELDS = sorted({name for model in vars(bodies).values() if _is_body(model) for name in model.model_fields})
QUERY_NAMES = ["cursor", "limit", "before", "repo", "type", "size", "user", "exp", "sig", "r", "expand"]
ODD_VALUES = ["", "0", "-1", "1e23", "nan", "99999999999999999999999", "true", "main", "../x", "%00", "²"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies_strategy = st.one_of(
    st.none(),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4).map(
        lambda value: json.dumps(value).encode()
    ),
    st.binary(max_size=64),
)
segment = st.text(min_size=1, max_size=16)
PARAM_VALUES: dict[str, st.SearchStrategy[str]] = {
    "plural": st.sampled_from(["models", "datasets", "spaces", "nope"]),
    "namespace": st.sampled_from(["admin", "fuzzorg"]) | segment,
    "name": st.sampled_from(["fuzz", "fuzz.git", "fuzzer"]) | segment,
    "prefix": st.sampled_from(["datasets", "spaces", "models", "default"]) | segment,
    "user": st.sampled_from(["fuzzer"]) | segment,
    "org": st.sampled_from(["fuzzorg"]) | segment,
    "status": st.sampled_from(["pending", "accepted", "rejected"]) | segment,
}
path_values = st.sampled_from(["main", "main/file.txt", "refs/pr/1", "a/../b", "main/%ff"]) | segment
hex_or_junk = st.sampled_from(["ab" * 32, "0" * 64]) | segment | st.integers().map(str)


@st.composite
def requests(draw: st.DrawFn, method: str, template: str, declared: list[str]) -> dict[str, Any]:
    def fill(match: re.Match[str]) -> str:
        name, is_path = match.group(1), match.group(2)
        if is_path:
            return "/".join(quote(part, safe="") for part in draw(path_values).split("/"))
        return quote(draw(PARAM_VALUES.get(name, hex_or_junk)), safe="")

    path = _PARAM.sub(fill, template)
    names = st.sampled_from(declared + QUERY_NAMES) | st.text(min_size=1, max_size=8)
    values = st.sampled_from(ODD_VALUES) | st.text(max_size=12) | st.integers().map(str)
    query = draw(st.dictionaries(names, values, max_size=4))
    headers = {}
    auth = draw(st.sampled_from(["admin", "admin", None, "Bearer junk", "Basic eA=="]))
    if auth is not None:
        headers["Authorization"] = auth
    content_type = draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded", None]))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {"method": method, "path": path, "query": query, "headers": headers, "body": draw(bodies_strategy)}


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    admin = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for path, payload in (
            ("/api/repos/create", {"name": "admin/fuzz"}),
            ("/api/admin/users", {"name": "fuzzer"}),
            ("/api/admin/orgs", {"name": "fuzzorg"}),
        ):
            assert client.post(path, json=payload, headers=admin).status_code == 200
        line = b'{"key": "file", "value": {"path": "file.txt", "content": "aGk="}}\n'
        commit = client.post(
            "/api/models/admin/fuzz/commit/main",
            content=b'{"key": "header", "value": {"summary": "seed"}}\n' + line,
            headers=admin,
        )
        assert commit.status_code == 200, commit.text
        yield server, client
    stop_server(server)


@pytest.mark.parametrize(("method", "template", "declared"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_no_request_gets_a_server_error(
    fuzz_hub: tuple[Server, httpx.Client], method: str, template: str, declared: list[str]
) -> None:
    server, client = fuzz_hub

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(requests(method, template, declared))
    def check(request: dict[str, Any]) -> None:
        headers = dict(request["headers"])
        if headers.get("Authorization") == "admin":
            headers["Authorization"] = f"Bearer {server.token}"
        response = client.request(
            request["method"],
            request["path"],
            params=request["query"],
            headers=headers,
            content=request["body"],
        )
        assert response.status_code < 500, (request, response.status_code, response.text[:300])

    check()
