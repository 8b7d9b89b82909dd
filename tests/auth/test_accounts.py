"""Accounts, tokens, gated repos, the audit log and abuse limits, through the real client and CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from tests.auth.conftest import OTHER_REPO, REPOS, Team, cli
from tests.support import Server, database_url, start_server, stop_server, weightyard_cli

from weightyard.repos.gitattributes import DEFAULT_GITATTRIBUTES


def api(team: Team, caller: str) -> HfApi:
    return HfApi(endpoint=team.server.url, token=team.tokens[caller] or False)


def test_whoami_reports_orgs_roles_and_fine_grained_scope(team: Team) -> None:
    me = api(team, "orgadmin").whoami()
    assert me["name"] == "orgadmin"
    assert me["orgs"] == [{"type": "org", "name": "acme", "fullname": "Acme Corp", "roleInOrg": "admin"}]
    scoped = api(team, "scoped-to-other").whoami()
    assert scoped["auth"]["accessToken"]["role"] == "fineGrained"
    assert scoped["auth"]["accessToken"]["fineGrained"]["scoped"][0]["entity"]["name"] == OTHER_REPO


def test_token_scoped_to_one_repo_works_there_and_nowhere_else(team: Team) -> None:
    scoped = api(team, "scoped-to-other")
    scoped.upload_file(path_or_fileobj=b"ok", path_in_repo="scoped.txt", repo_id=OTHER_REPO)
    assert "scoped.txt" in scoped.list_repo_files(OTHER_REPO)
    with pytest.raises(RepositoryNotFoundError):
        scoped.model_info(REPOS["private"])
    with pytest.raises(HfHubHTTPError) as denied:
        scoped.create_repo("acme/new-from-scoped")
    assert denied.value.response.status_code == 403


def test_only_members_who_can_write_create_repos_in_an_org(team: Team) -> None:
    api(team, "writer").create_repo("acme/by-writer")
    for caller in ("reader", "outsider"):
        with pytest.raises(HfHubHTTPError) as denied:
            api(team, caller).create_repo(f"acme/by-{caller}")
        assert denied.value.response.status_code == 403
    api(team, "outsider").create_repo("outsider/mine")
    with pytest.raises(HfHubHTTPError):
        api(team, "outsider").create_repo("writer/not-mine")


@pytest.mark.client
def test_gated_repo_flow_with_the_stock_client(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, outsider = api(team, "orgadmin"), api(team, "outsider")
    repo = "acme/gated-flow"
    owner.create_repo(repo)
    owner.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=repo)
    owner.update_repo_settings(repo, gated="manual")
    assert outsider.model_info(repo).gated == "manual"
    token = team.tokens["outsider"]
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo, "w.bin", endpoint=team.server.url, token=token, cache_dir=tmp_path / "a")
    asked = httpx.post(
        f"{team.server.url}/api/models/{repo}/ask-access", headers={"Authorization": f"Bearer {token}"}
    )
    assert asked.json() == {"status": "pending"}
    import huggingface_hub.constants

    # huggingface_hub 1.x manages access requests at the module-wide endpoint, not at the HfApi's own.
    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "ENDPOINT", team.server.url)
        assert [r.username for r in owner.list_pending_access_requests(repo)] == ["outsider"]
        owner.accept_access_request(repo, "outsider")
        assert [r.username for r in owner.list_accepted_access_requests(repo)] == ["outsider"]
    path = hf_hub_download(repo, "w.bin", endpoint=team.server.url, token=token, cache_dir=tmp_path / "b")
    assert Path(path).read_bytes() == b"weights"
    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "ENDPOINT", team.server.url)
        owner.reject_access_request(repo, "outsider", rejection_reason="no")
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo, "w.bin", endpoint=team.server.url, token=token, cache_dir=tmp_path / "c")
    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "ENDPOINT", team.server.url)
        owner.grant_access(repo, "reader")
        with pytest.raises(HfHubHTTPError):
            api(team, "reader").grant_access(repo, "outsider")
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo, "w.bin", endpoint=team.server.url, token=False, cache_dir=tmp_path / "d")


def test_auto_gated_repo_accepts_requests_at_once_and_cli_requests_access(team: Team) -> None:
    owner = api(team, "orgadmin")
    repo = "acme/gated-auto"
    owner.create_repo(repo)
    owner.update_repo_settings(repo, gated="auto")
    result = weightyard_cli(
        "access",
        "request",
        repo,
        env={"WEIGHTYARD_ENDPOINT": team.server.url, "HF_TOKEN": team.tokens["outsider"] or ""},
    )
    assert result.returncode == 0, result.stderr
    assert "accepted" in result.stdout + result.stderr
    assert [r.username for r in owner.list_accepted_access_requests(repo)] == ["outsider"]


def test_deleted_users_tokens_stop_working(team: Team) -> None:
    token = cli(team.server, "token", "create", "--user", "temp", "--name", "t")
    assert HfApi(endpoint=team.server.url, token=token).whoami()["name"] == "temp"
    cli(team.server, "user", "delete", "temp")
    response = httpx.get(f"{team.server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.headers["x-error-code"]) == (401, "InvalidCredentials")


def test_only_a_hash_of_each_token_is_stored_and_compared_in_constant_time(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from weightyard.auth import accounts, hash_secret
    from weightyard.config import Settings
    from weightyard.db import tables
    from weightyard.hub import Hub

    secret = team.tokens["writer"] or ""
    assert secret.startswith("wy_")
    # Every stored value (and, on SQLite, the very bytes of its files) is free of the secret.
    database = b"".join(p.read_bytes() for p in team.server.data.glob("weightyard.db*"))
    assert secret.encode() not in database
    engine = sa.create_engine(database_url(team.server.data))
    with engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            assert not any(secret in str(value) for row in rows for value in row), table.name
    engine.dispose()
    compared: list[tuple[str, str]] = []
    real = accounts.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(accounts.hmac, "compare_digest", spy)
    hub = Hub.open(Settings(data=team.server.data, database_url=database_url(team.server.data)))
    principal = hub.accounts.authenticate(secret)
    assert principal.name == "writer"
    assert compared == [(hash_secret(secret), hash_secret(secret))]


def test_members_are_managed_by_org_admins_through_the_api(team: Team) -> None:
    def put(caller: str, user: str, role: str) -> httpx.Response:
        return httpx.put(
            f"{team.server.url}/api/admin/orgs/acme/members/{user}",
            headers={"Authorization": f"Bearer {team.tokens[caller]}"},
            json={"role": role},
        )

    assert put("orgadmin", "outsider", "read").status_code == 200
    assert put("writer", "outsider", "admin").status_code == 403
    users = httpx.get(
        f"{team.server.url}/api/admin/users", headers={"Authorization": f"Bearer {team.tokens['siteadmin']}"}
    ).json()
    assert {"name": "outsider", "fullname": None, "isAdmin": False, "orgs": {"acme": "read"}} in users
    denied = httpx.get(
        f"{team.server.url}/api/admin/users", headers={"Authorization": f"Bearer {team.tokens['orgadmin']}"}
    )
    assert denied.status_code == 403
    assert (
        httpx.delete(
            f"{team.server.url}/api/admin/orgs/acme/members/outsider",
            headers={"Authorization": f"Bearer {team.tokens['orgadmin']}"},
        ).status_code
        == 200
    )


def test_tokens_through_the_api_for_oneself(team: Team) -> None:
    headers = {"Authorization": f"Bearer {team.tokens['reader']}"}
    created = httpx.post(
        f"{team.server.url}/api/admin/users/reader/tokens",
        headers=headers,
        json={"name": "api", "scope": "read"},
    )
    assert created.status_code == 200
    secret = created.json()["token"]
    assert HfApi(endpoint=team.server.url, token=secret).whoami()["name"] == "reader"
    others = httpx.post(
        f"{team.server.url}/api/admin/users/writer/tokens", headers=headers, json={"name": "x"}
    )
    assert others.status_code == 403
    assert (
        httpx.delete(f"{team.server.url}/api/admin/users/reader/tokens/api", headers=headers).status_code
        == 200
    )
    assert (
        httpx.get(
            f"{team.server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"}
        ).status_code
        == 401
    )


def test_every_write_is_in_the_audit_log_with_who_and_where(team: Team) -> None:
    writer = api(team, "writer")
    writer.upload_file(path_or_fileobj=b"audited", path_in_repo="audited.txt", repo_id=REPOS["public"])
    writer.create_branch(REPOS["public"], branch="audited-branch")
    result = weightyard_cli("audit-log", "--repo", REPOS["public"], "--json", "--data", str(team.server.data))
    entries = json.loads(result.stdout)
    commit = next(e for e in entries if e["action"] == "repo.commit" and e["actor"] == "writer")
    assert commit["origin"] == "127.0.0.1"
    assert commit["details"]["ref"] == "refs/heads/main"
    assert any(
        e["action"] == "ref.create" and e["details"]["ref"] == "refs/heads/audited-branch" for e in entries
    )
    everything = json.loads(
        weightyard_cli("audit-log", "--json", "--limit", "1000", "--data", str(team.server.data)).stdout
    )
    actions = {e["action"] for e in everything}
    assert {
        "user.create",
        "org.create",
        "org.member.set",
        "token.create",
        "token.revoke",
        "repo.create",
    } <= actions
    assert {"repo.settings", "access.request", "access.handle", "access.grant", "user.delete"} <= actions
    # No credential is logged: no token (they all start `wy_`) and no field holding a secret. (A repo may
    # well be named `secret`: another module's fixtures create one.)
    dumped = [json.dumps(e) for e in everything]
    assert not any("wy_" in d or '"secret"' in d for d in dumped)
    assert not any(token in d for d in dumped for token in team.tokens.values() if token)
    api_view = httpx.get(
        f"{team.server.url}/api/admin/audit-log",
        params={"repo": REPOS["public"]},
        headers={"Authorization": f"Bearer {team.tokens['orgadmin']}"},
    )
    assert api_view.status_code == 200
    assert api_view.json()[0]["repo"] == REPOS["public"]


def test_audit_log_is_append_only_in_the_database(team: Team) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url(team.server.data))
    with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'someone else'"))
    with pytest.raises(sa.exc.DatabaseError), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log"))
    engine.dispose()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("limited") / "data",
        env={
            "WEIGHTYARD_MAX_FILE_SIZE": "1000",
            # room for 1500 bytes beside the .gitattributes every repo starts with
            "WEIGHTYARD_MAX_REPO_SIZE": str(1500 + len(DEFAULT_GITATTRIBUTES)),
            "WEIGHTYARD_LFS_UPLOADS": "always",
        },
    )
    yield server
    stop_server(server)


def test_file_and_repo_size_limits_answer_413(limited: Server) -> None:
    admin = HfApi(endpoint=limited.url, token=limited.token)
    admin.create_repo("admin/limited")
    with pytest.raises(HfHubHTTPError) as too_big:
        admin.upload_file(path_or_fileobj=b"x" * 1001, path_in_repo="big.txt", repo_id="admin/limited")
    assert too_big.value.response.status_code == 413
    admin.upload_file(path_or_fileobj=b"x" * 900, path_in_repo="a.txt", repo_id="admin/limited")
    with pytest.raises(HfHubHTTPError) as repo_full:
        admin.upload_file(path_or_fileobj=b"y" * 900, path_in_repo="b.txt", repo_id="admin/limited")
    assert repo_full.value.response.status_code == 413
    assert "limit" in repo_full.value.response.json()["error"]
    batch = httpx.post(
        f"{limited.url}/admin/limited.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {limited.token}"},
        json={"operation": "upload", "objects": [{"oid": "ab" * 32, "size": 5000}]},
    )
    assert batch.json()["objects"][0]["error"]["code"] == 413


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"WEIGHTYARD_RATE_LIMIT_PER_MINUTE": "5"})
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        # Eleven requests: even a run that straddles a clock minute (two windows of 5) meets a refusal.
        statuses = [httpx.get(f"{server.url}/api/whoami-v2", headers=headers) for _ in range(11)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].headers["x-error-code"] == "RateLimited"
        other = cli_token(server)
        assert (
            httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {other}"}).status_code
            == 200
        )
    finally:
        stop_server(server)


def cli_token(server: Server) -> str:
    return cli(server, "token", "create", "--name", "second")


def test_sign_in_cookie_reads_private_files_but_never_writes(team: Team) -> None:
    cookies = {"weightyard_token": team.tokens["writer"] or ""}
    url = f"{team.server.url}/{REPOS['private']}/resolve/main/file.txt"
    assert httpx.get(url, cookies=cookies).content == b"content"
    assert httpx.get(url).status_code == 404
    assert httpx.get(url, cookies={"weightyard_token": "wy_stale"}).status_code == 404
    write = httpx.post(
        f"{team.server.url}/api/models/{REPOS['private']}/branch/from-cookie", cookies=cookies, json={}
    )
    assert (write.status_code, write.headers["x-error-code"]) == (404, "RepoNotFound")
