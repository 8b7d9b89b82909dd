"""Cards on a running hub: rendered once when the README is committed, and pages only show what was stored."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from tests.support import Server, start_server, stop_server

pytestmark = pytest.mark.client


def _stored_cards(server: Server, sha256: str) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(sa.text("SELECT html, plain, note FROM cards WHERE sha256 = :s"), {"s": sha256})
            )
    finally:
        engine.dispose()


def _replace_stored_html(server: Server, sha256: str, html: str) -> None:
    # Test set-up: mark the stored rendering, so the page can only show it if it reads the stored row.
    engine = sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE cards SET html = :h WHERE sha256 = :s"), {"h": html, "s": sha256})
    engine.dispose()


def test_pathological_readme_commits_and_the_page_shows_the_rendering_stored_at_commit(
    server: Server, repo_name: str
) -> None:
    readme = b"[" * (1024 * 1024)
    sha256 = hashlib.sha256(readme).hexdigest()
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=readme, path_in_repo="README.md", repo_id=repo_name)

    # Stored by the commit itself, before anyone has viewed a page: over the budget, so kept as text.
    [(html, plain, note)] = _stored_cards(server, sha256)
    assert plain
    assert html.startswith("<pre>[[[[")
    assert "plain text" in note

    _replace_stored_html(server, sha256, "<p>stored-at-commit</p>")
    # A second process on the same hub: the first keeps the stored cards it has read in memory (a card never
    # changes for its content), so only a process that has not read this one shows the marked row.
    second = start_server(server.data)
    try:
        page = httpx.get(f"{second.url}/{repo_name}.json", timeout=30).json()
    finally:
        stop_server(second)
    assert page["card"]["html"] == "<p>stored-at-commit</p>"
    assert "plain text" in page["card"]["plainText"]


def test_a_readme_shared_by_two_repos_is_rendered_once_and_links_into_each(
    server: Server, repo_name: str
) -> None:
    readme = f"# Shared {repo_name}\n\nSee [the config](config.json).\n".encode()
    api = HfApi(endpoint=server.url, token=server.token)
    for suffix in ("-a", "-b"):
        api.create_repo(repo_name + suffix)
        api.upload_file(path_or_fileobj=readme, path_in_repo="README.md", repo_id=repo_name + suffix)
    assert len(_stored_cards(server, hashlib.sha256(readme).hexdigest())) == 1
    for suffix in ("-a", "-b"):
        html = httpx.get(f"{server.url}/{repo_name}{suffix}.json", timeout=30).json()["card"]["html"]
        assert f'href="/{repo_name}{suffix}/blob/main/config.json"' in html
