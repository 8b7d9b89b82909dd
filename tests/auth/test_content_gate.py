"""The one gate: bytes leave the hub by any path exactly when `/resolve` would serve them.

Matrix: {public, private, gated (not approved), gated (approved), quarantined} x every read path x {anonymous,
outsider, reader, repo admin}. The content of each repo is unique to it and stored as Xet xorbs, so the
content-addressed paths (commit by digest, LFS "already stored", Xet write-token reconstructions, dedup
answers, shard references) can only reach it through that repo. Each caller's own repo is private, with the
`warn` scan policy: copying a digest there is the way around a quarantine that must not work.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from markupsafe import escape
from tests.auth.gate_support import (
    Stored,
    auth,
    cas_client,
    commit_lfs_pointer,
    create_repo,
    create_user,
    fetch_reconstruction,
    random_text,
    set_member,
    store_through_cas,
)
from tests.support import Server, loopback_request, start_server, stop_server

from weightyard.xet import Shard, serialize_shard

ORG = "vault"
KINDS = ("public", "private", "gated", "gated-approved", "quarantined")
CALLERS = ("anonymous", "outsider", "reader", "admin")
# caller -> (user name, role in the org); the hub's bootstrap user is already called "admin"
USERS = {"outsider": ("outsider", None), "reader": ("reader", "read"), "admin": ("keeper", "admin")}
# Who `/resolve` serves, per repo kind: the reference every other path is held to.
SERVED_TO = {
    "public": {"anonymous", "outsider", "reader", "admin"},
    "private": {"reader", "admin"},
    "gated": {"reader", "admin"},
    "gated-approved": {"outsider", "reader", "admin"},
    "quarantined": {"admin"},
}
# A pickle that runs a shell command when loaded: unsafe, and (protocol 0) readable as text on the page.
UNSAFE_PICKLE = b"cos\nsystem\n(S'echo quarantined'\ntR."

_unique = itertools.count()


@dataclass
class Vault:
    server: Server
    tokens: dict[str, str | None]
    stored: dict[str, Stored]

    def own(self, caller: str) -> str:
        return f"{USERS[caller][0]}/own"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    server = start_server(tmp_path_factory.mktemp("gate") / "data")
    loopback_request(
        "POST", f"{server.url}/api/admin/orgs", headers=auth(server.token), json={"name": ORG}
    ).raise_for_status()
    tokens: dict[str, str | None] = {"anonymous": None}
    for caller, (user, role) in USERS.items():
        tokens[caller] = create_user(server, user)
        if role:
            set_member(server, ORG, user, role)
        create_repo(server, str(tokens[caller]), f"{user}/own", private=True, scanPolicy="warn")
    stored = {}
    for kind in KINDS:
        repo = f"{ORG}/{kind}"
        settings: dict[str, object] = {}
        if kind.startswith("gated"):
            settings["gated"] = "manual"
        if kind == "quarantined":
            settings["scanPolicy"] = "quarantine"
        create_repo(server, server.token, repo, kind == "private", **settings)
        path, data = (
            ("model.pkl", UNSAFE_PICKLE) if kind == "quarantined" else ("secret.txt", random_text(kind))
        )
        stored[kind] = store_through_cas(server, server.token, repo, path, data)
    loopback_request(
        "POST",
        f"{server.url}/api/models/{ORG}/gated-approved/user-access-request/grant",
        headers=auth(server.token),
        json={"user": "outsider"},
    ).raise_for_status()
    yield Vault(server, tokens, stored)
    stop_server(server)


# ---------------------------------------------------------------------------------------------- read paths
# Each returns whether the path released the content (checking the bytes when it did).


def resolve(vault: Vault, caller: str, stored: Stored) -> bool:
    url = f"{vault.server.url}/{stored.repo}/resolve/main/{stored.path}"
    response = loopback_request("GET", url, headers=auth(vault.tokens[caller]))
    if response.status_code == 200:
        assert response.content == stored.data
        return True
    assert response.status_code in (401, 403, 404), response.text
    return False


def xet_read_token(vault: Vault, caller: str, stored: Stored) -> bool:
    cas = cas_client(vault.server, vault.tokens[caller], stored.repo, "read")
    return cas is not None and fetch_reconstruction(*cas, stored) is not None


def xet_write_token_reconstruction(vault: Vault, caller: str, stored: Stored) -> bool:
    token = vault.tokens[caller]
    cas = cas_client(vault.server, token, vault.own(caller), "write") if token else None
    return cas is not None and fetch_reconstruction(*cas, stored) is not None


def commit_by_digest(vault: Vault, caller: str, stored: Stored) -> bool:
    token = vault.tokens[caller]
    if token is None:
        return False
    path = f"copy-{next(_unique)}-{stored.path}"
    own = vault.own(caller)
    committed = commit_lfs_pointer(vault.server, token, own, path, stored.sha256, len(stored.data))
    if committed.status_code != 200:
        assert committed.status_code == 422 and committed.json()["code"] == "BlobNotFound", committed.text
        return False
    copy = loopback_request("GET", f"{vault.server.url}/{own}/resolve/main/{path}", headers=auth(token))
    assert copy.status_code == 200 and copy.content == stored.data
    return True


def lfs_already_stored(vault: Vault, caller: str, stored: Stored) -> bool:
    token = vault.tokens[caller]
    if token is None:
        return False
    response = loopback_request(
        "POST",
        f"{vault.server.url}/{vault.own(caller)}.git/info/lfs/objects/batch",
        headers=auth(token),
        json={"operation": "upload", "objects": [{"oid": stored.sha256, "size": len(stored.data)}]},
    )
    assert response.status_code == 200, response.text
    return "actions" not in response.json()["objects"][0]


def dedup_answer(vault: Vault, caller: str, stored: Stored) -> bool:
    token = vault.tokens[caller]
    cas = cas_client(vault.server, token, vault.own(caller), "write") if token else None
    if cas is None:
        return False
    client, url = cas
    response = client.get(f"{url}/v1/chunks/default/{stored.first_chunk}")
    assert response.status_code in (200, 404)
    return response.status_code == 200


def shard_reference(vault: Vault, caller: str, stored: Stored) -> bool:
    token = vault.tokens[caller]
    cas = cas_client(vault.server, token, vault.own(caller), "write") if token else None
    if cas is None:
        return False
    client, url = cas
    response = client.post(f"{url}/v1/shards", content=serialize_shard(Shard((stored.entry,), ())))
    if response.status_code != 200:
        assert response.json()["code"] == "XetUnknownXorb", response.text
        return False
    return True


def web_file_page_json(vault: Vault, caller: str, stored: Stored) -> bool:
    url = f"{vault.server.url}/{stored.repo}/blob/main/{stored.path}.json"
    response = loopback_request("GET", url, headers=auth(vault.tokens[caller]))
    if response.status_code != 200:
        assert response.status_code == 404
        return False
    view = response.json()["view"]
    if view["kind"] == "text":
        assert view["text"] == stored.data.decode()
        return True
    assert view["kind"] in ("gated", "quarantined")
    assert stored.data.decode() not in response.text
    return False


def web_file_page_html(vault: Vault, caller: str, stored: Stored) -> bool:
    url = f"{vault.server.url}/{stored.repo}/blob/main/{stored.path}"
    response = loopback_request("GET", url, headers=auth(vault.tokens[caller]))
    return response.status_code == 200 and str(escape(stored.data.decode())) in response.text


def web_listing_download_link(vault: Vault, caller: str, stored: Stored) -> bool:
    """Not bytes, but the page must not offer a download the gate refuses."""
    url = f"{vault.server.url}/{stored.repo}/tree/main"
    response = loopback_request(
        "GET", url, headers={**auth(vault.tokens[caller]), "Accept": "application/json"}
    )
    if response.status_code != 200:
        assert response.status_code == 404
        return False
    (row,) = [item for item in response.json()["files"] if item["path"] == stored.path]
    return row["download"] is not None


READ_PATHS: dict[str, Callable[[Vault, str, Stored], bool]] = {
    "xet_read_token": xet_read_token,
    "xet_write_token_reconstruction": xet_write_token_reconstruction,
    "commit_by_digest": commit_by_digest,
    "lfs_already_stored": lfs_already_stored,
    "dedup_answer": dedup_answer,
    "shard_reference": shard_reference,
    "web_file_page_json": web_file_page_json,
    "web_file_page_html": web_file_page_html,
    "web_listing_download_link": web_listing_download_link,
}


# Paths that start from the caller's own repo: an anonymous caller has none.
NEEDS_AN_ACCOUNT = {
    "xet_write_token_reconstruction",
    "commit_by_digest",
    "lfs_already_stored",
    "dedup_answer",
    "shard_reference",
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_read_path_releases_content_exactly_when_resolve_does(
    vault: Vault, kind: str, caller: str
) -> None:
    stored = vault.stored[kind]
    served = caller in SERVED_TO[kind]
    assert resolve(vault, caller, stored) == served
    released = {name: path(vault, caller, stored) for name, path in READ_PATHS.items()}
    expected = {
        name: served and not (caller == "anonymous" and name in NEEDS_AN_ACCOUNT) for name in READ_PATHS
    }
    assert released == expected


def test_the_uploader_commits_its_own_fresh_upload(vault: Vault) -> None:
    token = vault.tokens["outsider"]
    assert token is not None
    fresh = store_through_cas(vault.server, token, vault.own("outsider"), "fresh.txt", random_text("fresh"))
    assert resolve(vault, "outsider", fresh)


def test_the_first_commit_of_a_repo_is_in_the_content_index(vault: Vault) -> None:
    # A new repo starts with a commit adding the default .gitattributes: anyone who may download it from a
    # public repo may name its digest too.
    attributes = loopback_request("GET", f"{vault.server.url}/{ORG}/public/resolve/main/.gitattributes")
    assert attributes.status_code == 200
    token = vault.tokens["outsider"]
    assert token is not None
    sha = hashlib.sha256(attributes.content).hexdigest()
    committed = commit_lfs_pointer(
        vault.server, token, vault.own("outsider"), "a.txt", sha, len(attributes.content)
    )
    assert committed.status_code == 200, committed.text
