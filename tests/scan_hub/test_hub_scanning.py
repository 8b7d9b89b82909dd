"""The hub scans every new file: unsafe ones are refused or quarantined, verdicts show in the tree,
model_info and `weightyard ls`, and each blob is scanned once per scanner version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from tests.support import Server, weightyard_cli

# GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP: a pickle that would run a shell command when loaded.
# It is only ever scanned, never loaded, and its command only echoes a marker.
UNSAFE_PICKLE = b"cos\nsystem\n(S'echo WEIGHTYARD_MARKER'\ntR."
REMOTE_CODE_CONFIG = json.dumps({"model_type": "x", "auto_map": {"AutoModel": "modeling_x.Model"}}).encode()
FOREIGN_CODE_CONFIG = json.dumps(
    {"model_type": "x", "auto_map": {"AutoModel": "evil/x--modeling.Model"}}
).encode()


def api_for(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


def test_commit_with_an_unsafe_pickle_is_refused_with_findings(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    head = api.model_info(repo_name).sha
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_commit(
            repo_name,
            operations=[
                CommitOperationAdd("config.json", b"{}"),
                CommitOperationAdd("pytorch_model.bin", UNSAFE_PICKLE),
            ],
            commit_message="sneak",
        )
    response = refused.value.response
    assert (response.status_code, response.headers["x-error-code"]) == (422, "UnsafeFile")
    findings = response.json()["findings"]
    assert any(f["path"] == "pytorch_model.bin" and "system" in f["subject"] for f in findings)
    assert api.model_info(repo_name).sha == head


def test_quarantined_file_is_served_to_repo_admins_only(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    httpx.put(
        f"{server.url}/api/models/{repo_name}/settings",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"scanPolicy": "quarantine"},
    ).raise_for_status()
    api.upload_file(path_or_fileobj=UNSAFE_PICKLE, path_in_repo="model.pkl", repo_id=repo_name)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_name)
    anonymous = httpx.get(f"{server.url}/{repo_name}/resolve/main/model.pkl")
    assert (anonymous.status_code, anonymous.headers["x-error-code"]) == (403, "Quarantined")
    owner = httpx.get(
        f"{server.url}/{repo_name}/resolve/main/model.pkl",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert owner.status_code == 200
    assert "unsafe" in owner.headers["x-hf-warning"]
    security = {f.path: f.security for f in api.list_repo_tree(repo_name, expand=True)}
    assert security["model.pkl"]["status"] == "unsafe"
    imports = security["model.pkl"]["pickle_import_scan"]
    assert imports["highestSafetyLevel"] == "dangerous"
    assert {"module": "os", "name": "system", "safety": "dangerous"} in imports["imports"]
    assert security["config.json"]["status"] == "safe"
    status = api.model_info(repo_name, securityStatus=True).security_repo_status
    assert status["verdict"] == "unsafe"
    assert [f["path"] for f in status["filesWithIssues"]] == ["model.pkl"]


def test_warn_policy_serves_unsafe_and_suspicious_files_with_a_warning(
    server: Server, repo_name: str
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    httpx.put(
        f"{server.url}/api/models/{repo_name}/settings",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"scanPolicy": "warn"},
    ).raise_for_status()
    api.upload_file(path_or_fileobj=UNSAFE_PICKLE, path_in_repo="model.pkl", repo_id=repo_name)
    api.upload_file(path_or_fileobj=REMOTE_CODE_CONFIG, path_in_repo="config.json", repo_id=repo_name)
    pickle = httpx.get(f"{server.url}/{repo_name}/resolve/main/model.pkl")
    assert pickle.status_code == 200
    assert pickle.headers["x-hf-warning"].startswith("weightyard-scan; model.pkl is unsafe")
    config = httpx.head(f"{server.url}/{repo_name}/resolve/main/config.json")
    assert "config.json is suspicious" in config.headers["x-hf-warning"]


def test_remote_code_config_is_suspicious_but_accepted_under_refuse(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=REMOTE_CODE_CONFIG, path_in_repo="config.json", repo_id=repo_name)
    _, entry = api.list_repo_tree(repo_name, expand=True)
    assert entry.path == "config.json" and entry.security["status"] == "suspicious"
    # the folder context: auto_map names a code file this repo lacks (findings are in the raw answer; the
    # client keeps only the status)
    _, raw = httpx.get(f"{server.url}/api/models/{repo_name}/tree/main?expand=true").json()
    assert any(f["rule"] == "context.missing-code" for f in raw["securityFileStatus"]["findings"])


def test_config_that_runs_code_from_another_repo_is_refused(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=FOREIGN_CODE_CONFIG, path_in_repo="config.json", repo_id=repo_name)
    assert refused.value.response.headers["x-error-code"] == "UnsafeFile"


def _reports_for(server: Server, sha256: str) -> list[tuple[str, str, str]]:
    engine = sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name_key, scanner_version, verdict FROM scan_reports WHERE sha256 = :sha"),
            {"sha": sha256},
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_each_blob_is_scanned_once_and_reports_of_another_scanner_version_are_not_trusted(
    server: Server, repo_name: str
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    content = b"weights that appear twice " * 1000
    sha = hashlib.sha256(content).hexdigest()
    api.upload_file(path_or_fileobj=content, path_in_repo="a.bin", repo_id=repo_name)
    api.upload_file(path_or_fileobj=content, path_in_repo="copy/b.bin", repo_id=repo_name)
    api.list_repo_tree(repo_name, expand=True, recursive=True)
    assert len(_reports_for(server, sha)) == 1
    # An old scanner's report saying "safe" for an unsafe pickle must not be reused.
    pickle_sha = hashlib.sha256(UNSAFE_PICKLE + b"#").hexdigest()
    engine = sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scan_reports "
                "(sha256, name_key, scanner_version, verdict, format, report, created_at) "
                "VALUES (:sha, '', 'weightyard-scan/0', 'safe', 'pickle', '{}', '2026-01-01 00:00:00')"
            ),
            {"sha": pickle_sha},
        )
    engine.dispose()
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=UNSAFE_PICKLE + b"#", path_in_repo="old.pkl", repo_id=repo_name)
    assert refused.value.response.status_code == 422


def test_weightyard_ls_shows_verdicts(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=REMOTE_CODE_CONFIG, path_in_repo="config.json", repo_id=repo_name)
    listing = weightyard_cli(
        "ls", repo_name, "--json", env={"WEIGHTYARD_ENDPOINT": server.url, "HF_TOKEN": server.token}
    )
    assert listing.returncode == 0, listing.stderr
    attributes, row = json.loads(listing.stdout)
    assert (attributes["verdict"], row["verdict"]) == ("safe", "suspicious")
    table = weightyard_cli("ls", repo_name, env={"WEIGHTYARD_ENDPOINT": server.url, "HF_TOKEN": server.token})
    assert "suspicious" in table.stdout + table.stderr
