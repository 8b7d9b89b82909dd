"""Rights are checked live: grants issued on behalf of a user (Xet read and write tokens, the signed fetch
URLs of a reconstruction, signed LFS upload URLs) stop working as soon as the user's hub token is revoked, the
user leaves the organisation that owns the repo, or the user is deleted, long before they expire."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from tests.auth.gate_support import (
    Stored,
    auth,
    cas_client,
    create_repo,
    create_user,
    fetch_reconstruction,
    random_text,
    set_member,
    store_through_cas,
)
from tests.support import Server, loopback_request, start_server, stop_server

from weightyard.xet import hash_to_string, serialize_xorb

ORG = "live"
REPO = f"{ORG}/private"
PART = 1024


@dataclass
class Hub:
    server: Server
    stored: Stored


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # Small multipart parts, so an upload of a few kB gets part URLs too.
    env = {"WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(PART)}
    server = start_server(tmp_path_factory.mktemp("live") / "data", env)
    loopback_request(
        "POST", f"{server.url}/api/admin/orgs", headers=auth(server.token), json={"name": ORG}
    ).raise_for_status()
    create_repo(server, server.token, REPO, private=True)
    stored = store_through_cas(server, server.token, REPO, "secret.txt", random_text("live"))
    yield Hub(server, stored)
    stop_server(server)


@dataclass
class Grants:
    """Everything a member obtained while still a member, to be tried again afterwards."""

    read: tuple[httpx.Client, str]
    write: tuple[httpx.Client, str]
    fetch_urls: list[tuple[str, str]]
    lfs_upload: tuple[str, bytes]
    lfs_part: tuple[str, bytes]
    # an upload session's part URL, its part, its completion URL and the sha256 to complete with
    session: tuple[str, bytes, str, str]


def _grants(hub: Hub, token: str) -> Grants:
    read = cas_client(hub.server, token, REPO, "read")
    write = cas_client(hub.server, token, REPO, "write")
    assert read is not None and write is not None
    assert fetch_reconstruction(*read, hub.stored) is not None
    client, url = read
    plan = client.get(f"{url}/v1/reconstructions/{hub.stored.xet_hash}").json()
    fetch_urls = [
        (item["url"], f"bytes={item['url_range']['start']}-{item['url_range']['end']}")
        for ranges in plan["fetch_info"].values()
        for item in ranges
    ]
    assert _xorb_upload(write).status_code == 200
    small, large = os.urandom(PART), os.urandom(3 * PART)
    objects = [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)} for data in (small, large)]
    batch = loopback_request(
        "POST",
        f"{hub.server.url}/{REPO}.git/info/lfs/objects/batch",
        headers=auth(token),
        json={"operation": "upload", "objects": objects},
    )
    assert batch.status_code == 200, batch.text
    basic, multipart = (item["actions"]["upload"] for item in batch.json()["objects"])
    assert "1" in multipart["header"]
    opened = loopback_request(
        "POST", f"{hub.server.url}/api/models/{REPO}/uploads", headers=auth(token), json={"size": len(large)}
    )
    assert opened.status_code == 200, opened.text
    session = opened.json()
    for number, url in enumerate(session["parts"][1:], start=2):
        loopback_request("PUT", url, content=large[(number - 1) * PART : number * PART]).raise_for_status()
    return Grants(
        read,
        write,
        fetch_urls,
        (basic["href"], small),
        (multipart["header"]["1"], large[:PART]),
        (session["parts"][0], large[:PART], session["complete"], hashlib.sha256(large).hexdigest()),
    )


def _xorb_upload(cas: tuple[httpx.Client, str]) -> httpx.Response:
    client, url = cas
    body, info = serialize_xorb([os.urandom(2000)])
    return client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)


def _revoke(hub: Hub, user: str) -> None:
    loopback_request(
        "DELETE", f"{hub.server.url}/api/admin/users/{user}/tokens/main", headers=auth(hub.server.token)
    ).raise_for_status()


def _remove_member(hub: Hub, user: str) -> None:
    loopback_request(
        "DELETE", f"{hub.server.url}/api/admin/orgs/{ORG}/members/{user}", headers=auth(hub.server.token)
    ).raise_for_status()


def _delete_user(hub: Hub, user: str) -> None:
    loopback_request(
        "DELETE", f"{hub.server.url}/api/admin/users/{user}", headers=auth(hub.server.token)
    ).raise_for_status()


# event -> (what happens, the status every grant then gets: 401 once the token is gone, 404 or 403 once the
# user is merely no longer allowed there)
EVENTS: dict[str, tuple[Callable[[Hub, str], None], set[int]]] = {
    "token_revoked": (_revoke, {401}),
    "member_removed": (_remove_member, {403, 404}),
    "user_deleted": (_delete_user, {401}),
}


@pytest.mark.parametrize("event", EVENTS)
def test_xet_tokens_fetch_urls_and_lfs_upload_urls_die_with_the_users_rights(hub: Hub, event: str) -> None:
    user = f"member-{event.replace('_', '-')}"
    token = create_user(hub.server, user)
    set_member(hub.server, ORG, user, "write")
    grants = _grants(hub, token)

    happen, refused = EVENTS[event]
    happen(hub, user)
    # Someone joins right after: SQLite hands a deleted user's and token's ids to the next ones created, and
    # a grant must not pass to whoever holds its token's id now.
    successor = create_user(hub.server, f"next-{user}")
    set_member(hub.server, ORG, f"next-{user}", "write")
    assert successor != token

    read_client, read_url = grants.read
    reconstruction = read_client.get(f"{read_url}/v1/reconstructions/{hub.stored.xet_hash}")
    assert reconstruction.status_code in refused, reconstruction.text
    for url, byte_range in grants.fetch_urls:
        fetched = loopback_request("GET", url, headers={"Range": byte_range})
        assert fetched.status_code in refused, fetched.text
    write_client, write_url = grants.write
    chunk = write_client.get(f"{write_url}/v1/chunks/default/{hub.stored.first_chunk}")
    assert chunk.status_code in refused, chunk.text
    assert _xorb_upload(grants.write).status_code in refused
    upload_url, content = grants.lfs_upload
    put = loopback_request("PUT", upload_url, content=content)
    assert put.status_code in refused, put.text
    part_url, part = grants.lfs_part
    put = loopback_request("PUT", part_url, content=part)
    # A deleted user's multipart uploads are deleted with it: the part URL names nothing any more (404).
    assert put.status_code in refused | ({404} if event == "user_deleted" else set()), put.text
    session_part, part, session_complete, sha256 = grants.session
    put = loopback_request("PUT", session_part, content=part)
    assert put.status_code in refused | ({404} if event == "user_deleted" else set()), put.text
    done = loopback_request("POST", session_complete, json={"oid": sha256})
    assert done.status_code in refused | ({404} if event == "user_deleted" else set()), done.text
