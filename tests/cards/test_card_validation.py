"""Card metadata is checked as the Hub checks it: by /api/validate-yaml and at every commit of a README."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from huggingface_hub import HfApi
from tests.support import Server, run_python

from weightyard.cards import EMPTY_METADATA, check_card

BAD_MODEL_INDEX = b"---\nlicense: mit\nmodel-index: foo\n---\n# Card\n"


def test_model_index_must_be_the_evaluation_results_structure() -> None:
    assert check_card("---\nmodel-index: foo\n---\n").errors == ['"model-index" must be an array']
    check = check_card("---\nmodel-index:\n- results:\n  - task: {}\n    metrics: [{type: acc}]\n---\n")
    assert check.errors == [
        '"model-index[0].name" is required',
        '"model-index[0].results[0].task.type" is required',
        '"model-index[0].results[0].dataset" must be of type object',
        '"model-index[0].results[0].metrics[0].value" is required',
    ]
    good = (
        "---\nmodel-index:\n- name: tiny\n  results:\n  - task: {type: text-classification}\n"
        "    dataset: {type: glue, name: GLUE}\n    metrics: [{type: accuracy, value: 0.9}]\n---\n"
    )
    assert check_card(good).errors == []


def test_empty_and_unknown_metadata_are_warnings() -> None:
    assert check_card("# no metadata\n").warnings == [EMPTY_METADATA]
    check = check_card("---\nlicense: mit\nfavourite_colour: blue\nextra_gated_prompt: hi\n---\n")
    assert check.errors == []
    assert check.warnings == ['"favourite_colour" is not a known metadata field']


# Not rerun with the 1.x client: its RepoCard.validate posts to https://huggingface.co whatever HF_ENDPOINT
# says (the 1.x HfApi commit check, tested below, does use the configured endpoint).
def test_validate_yaml_answers_as_the_hub_for_the_stock_repocard(server: Server) -> None:
    code = (
        "from huggingface_hub import RepoCard\n"
        f"card = RepoCard({BAD_MODEL_INDEX.decode()!r})\n"
        "try:\n    card.validate()\nexcept ValueError as exc:\n    print('REFUSED', exc)\n"
        "else:\n    print('ACCEPTED')\n"
        "RepoCard('---\\nlicense: mit\\n---\\n# ok\\n').validate()\nprint('GOOD ACCEPTED')\n"
    )
    result = run_python(code, {"HF_ENDPOINT": server.url}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "REFUSED" in result.stdout
    assert '"model-index" must be an array' in result.stdout
    assert "GOOD ACCEPTED" in result.stdout


@pytest.mark.client
def test_the_stock_client_refuses_to_commit_a_readme_with_an_invalid_model_index(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    with pytest.raises(ValueError, match=r'Invalid metadata in README.md.\n- "model-index" must be an array'):
        api.upload_file(path_or_fileobj=BAD_MODEL_INDEX, path_in_repo="README.md", repo_id=repo_name)
    with pytest.warns(UserWarning, match=EMPTY_METADATA):
        api.upload_file(path_or_fileobj=b"# Just prose\n", path_in_repo="README.md", repo_id=repo_name)
    assert "README.md" in api.list_repo_files(repo_name)


@pytest.mark.client
def test_a_commit_of_an_invalid_card_is_refused_by_the_hub_itself(server: Server, repo_name: str) -> None:
    # A client that skips /api/validate-yaml (git, an older tool) meets the same check at commit.
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    lines = [
        {"key": "header", "value": {"summary": "bad card"}},
        {
            "key": "file",
            "value": {"path": "README.md", "content": base64.b64encode(BAD_MODEL_INDEX).decode()},
        },
    ]
    response = httpx.post(
        f"{server.url}/api/models/{repo_name}/commit/main",
        content=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert (response.status_code, response.headers["x-error-code"]) == (400, "InvalidCardMetadata")
    assert response.json()["errors"] == [{"message": '"model-index" must be an array'}]
    assert "README.md" not in api.list_repo_files(repo_name)
