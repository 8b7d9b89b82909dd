"""A part that opens while its upload session is abandoned leaves no staging folder behind.

An abandon deletes the session's row, then its folder. A part request that read the row just before, and
opens its writer just after, made the folder again: no row, a folder only `weightyard gc` would remove (a
fresh-clone test run found one, left by a `push` cut off midway whose client then abandoned the session).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from weightyard.config import Settings
from weightyard.errors import NotFound
from weightyard.hub import Hub
from weightyard.repos.lfs import UploadSession

MIB = 1024 * 1024


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    instance = Hub.open(Settings(data=tmp_path / "data"))
    yield instance
    instance.close()


def _signed(url: str) -> tuple[int, str]:
    query = parse_qs(urlsplit(url).query)
    return int(query["exp"][0]), query["sig"][0]


def _session(hub: Hub) -> UploadSession:
    admin = hub.accounts.authenticate(hub.admin_token())
    repo = hub.repos.create_repo(admin, "model", "admin", "race", private=False)
    return hub.lfs.open_session(admin, repo, 3 * MIB, "http://127.0.0.1:1")


def _staging(hub: Hub, upload_id: str) -> Path:
    return hub.settings.data / "blobs" / ".tmp" / "parts" / upload_id


def test_a_part_opened_in_an_open_session_stages_its_folder(hub: Hub) -> None:
    # What the test below looks for is there when nothing races: the part's writer makes the folder.
    session = _session(hub)
    writer = hub.lfs.open_part(session.upload_id, 1, *_signed(session.part_urls[0]))
    try:
        assert (_staging(hub, session.upload_id) / "data").is_file()
    finally:
        writer.abort()
    hub.lfs.abandon_session(session.upload_id, *_signed(session.abandon_url))
    assert not _staging(hub, session.upload_id).exists()


def test_a_part_opened_while_its_session_is_abandoned_leaves_no_folder(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _session(hub)
    staged = hub.lfs._staged

    def abandoned_in_between(upload_id: str, row: object) -> object:
        # The part has read the session's row; the client's abandon runs whole before its writer opens.
        hub.lfs.abandon_session(upload_id, *_signed(session.abandon_url))
        assert not _staging(hub, upload_id).exists()
        return staged(upload_id, row)  # type: ignore[arg-type]

    monkeypatch.setattr(hub.lfs, "_staged", abandoned_in_between)
    with pytest.raises(NotFound):
        hub.lfs.open_part(session.upload_id, 1, *_signed(session.part_urls[0]))
    assert not _staging(hub, session.upload_id).exists()
