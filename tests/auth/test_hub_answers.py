"""What the stock client shows users: request ids, the Hub's wording, display names and org roles."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
from tests.auth.conftest import ORG, REPOS, Team, cli

pytestmark = pytest.mark.client


def api(team: Team, caller: str) -> HfApi:
    return HfApi(endpoint=team.server.url, token=team.tokens[caller] or False)


def test_every_answer_carries_a_request_id_and_the_client_shows_it_in_errors(team: Team) -> None:
    mine = httpx.get(f"{team.server.url}/api/models/{REPOS['public']}", headers={"X-Request-Id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    hostile = httpx.get(f"{team.server.url}/api/models/x/y", headers={"X-Request-Id": "a b\tc" + "x" * 300})
    assert len(hostile.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != mine.headers["x-request-id"]
    with pytest.raises(HfHubHTTPError) as missing:
        api(team, "reader").model_info(f"{ORG}/does-not-exist")
    request_id = missing.value.response.headers["x-request-id"]
    assert f"(Request ID: {request_id})" in str(missing.value)


def test_a_stale_parent_commit_is_refused_with_the_hubs_words(team: Team) -> None:
    writer = api(team, "writer")
    repo = f"{ORG}/stale-parent"
    writer.create_repo(repo)
    first = writer.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo).oid
    writer.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id=repo)
    with pytest.raises(HfHubHTTPError) as stale:
        writer.create_commit(
            repo,
            [CommitOperationAdd("b.txt", b"3")],
            commit_message="late",
            parent_commit=first,
        )
    assert stale.value.response.status_code == 412
    assert "The branch was updated since you opened this page. Please refresh and try again." in str(
        stale.value
    )


def test_deleting_the_default_branch_is_refused_with_the_hubs_words(team: Team) -> None:
    with pytest.raises(HfHubHTTPError) as refused:
        api(team, "writer").delete_branch(REPOS["public"], branch="main")
    assert "Cannot delete refs/heads/main" in str(refused.value)


def test_a_gated_file_names_the_page_to_ask_for_access(team: Team, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as gated:
        hf_hub_download(
            REPOS["gated"],
            "file.txt",
            endpoint=team.server.url,
            token=team.tokens["outsider"],
            cache_dir=tmp_path,
        )
    assert (
        f"Access to model {REPOS['gated']} is restricted and you are not in the authorized list. "
        f"Visit {team.server.url}/{REPOS['gated']} to ask for access."
    ) in str(gated.value)


def test_accepting_an_access_request_twice_is_an_error(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # huggingface_hub 1.x manages access requests at the module-wide endpoint, not at the HfApi's own.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", team.server.url)
    owner = api(team, "orgadmin")
    repo = f"{ORG}/gated-twice"
    owner.create_repo(repo)
    owner.update_repo_settings(repo, gated="manual")
    headers = {"Authorization": f"Bearer {team.tokens['reader']}"}
    httpx.post(f"{team.server.url}/api/models/{repo}/ask-access", headers=headers)
    owner.accept_access_request(repo, "reader")
    with pytest.raises(HfHubHTTPError) as again:
        owner.accept_access_request(repo, "reader")
    assert again.value.response.status_code == 409
    assert "already has access" in str(again.value)
    with pytest.raises(HfHubHTTPError) as granted:
        owner.grant_access(repo, "reader")
    assert granted.value.response.status_code == 409


def test_whoami_shows_display_names_set_from_the_cli(team: Team) -> None:
    cli(team.server, "user", "update", "reader", "--fullname", "Rita Reader")
    me = api(team, "reader").whoami()
    assert me["fullname"] == "Rita Reader"
    assert me["orgs"][0]["fullname"] == "Acme Corp"
    assert api(team, "outsider").whoami()["fullname"] == "outsider"  # none set: the name, as on the Hub
    cli(team.server, "user", "create", "named", "--fullname", "Nadia Named")
    token = cli(team.server, "token", "create", "--user", "named", "--name", "t")
    assert HfApi(endpoint=team.server.url, token=token).whoami()["fullname"] == "Nadia Named"
    cli(team.server, "org", "update", ORG, "--fullname", "Acme Corporation")
    assert api(team, "reader").whoami()["orgs"][0]["fullname"] == "Acme Corporation"
    cli(team.server, "org", "update", ORG, "--fullname", "Acme Corp")


def test_invisible_characters_in_a_display_name_are_refused(team: Team) -> None:
    from tests.support import weightyard_cli

    result = weightyard_cli(
        "user", "update", "reader", "--fullname", "Rita\u200bReader", "--data", str(team.server.data)
    )
    assert result.returncode == 2
    assert "invisible" in result.stderr + result.stdout


def test_an_org_write_member_changes_gating_visibility_and_deletes_org_repos(team: Team) -> None:
    owner, writer = api(team, "orgadmin"), api(team, "writer")
    repo = f"{ORG}/writer-settings"
    owner.create_repo(repo)
    writer.update_repo_settings(repo, gated="manual")
    writer.update_repo_settings(repo, private=True)
    info = writer.model_info(repo)
    assert (info.gated, info.private) == ("manual", True)
    writer.delete_repo(repo)
    with pytest.raises(HfHubHTTPError):
        owner.model_info(repo)


def test_a_contributor_writes_only_to_the_org_repos_they_created(team: Team) -> None:
    contributor = api(team, "contributor")
    mine = f"{ORG}/contributor-own"
    contributor.create_repo(mine)
    contributor.upload_file(path_or_fileobj=b"mine", path_in_repo="a.txt", repo_id=mine)
    contributor.update_repo_settings(mine, gated="auto")
    with pytest.raises(HfHubHTTPError) as denied:
        contributor.upload_file(path_or_fileobj=b"theirs", path_in_repo="a.txt", repo_id=REPOS["public"])
    assert denied.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as settings:
        contributor.update_repo_settings(REPOS["public"], gated="manual")
    assert settings.value.response.status_code == 403
    assert contributor.model_info(REPOS["private"]).id == REPOS["private"]  # read on the others
    contributor.delete_repo(mine)
