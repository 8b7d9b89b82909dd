"""Storage commands on the data folder: `weightyard stats` (dedup), `weightyard reindex` (what commits
derive, for repos committed before a hub version derived it); `gc` lives in `cli/maintenance.py`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from weightyard.cli.accounts import DataOption
from weightyard.cli.app import app
from weightyard.cli.hub import JsonOption, fail
from weightyard.cli.maintenance import _open
from weightyard.cli.progress import out


def _xet(data: Any) -> Any:
    hub = _open(data, create=False)
    if hub.xet is None:
        raise fail("Xet storage is turned off (WEIGHTYARD_XET=0): there is nothing to collect or count", 2)
    return hub.xet


def _size(value: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    amount = float(value)
    for unit in units:
        if amount < 1024 or unit == units[-1]:
            return f"{amount:.1f} {unit}" if unit != "B" else f"{value} B"
        amount /= 1024
    raise AssertionError("unreachable")


@app.command()
def stats(as_json: JsonOption = False, data: DataOption = None) -> None:
    """Logical bytes (file sizes over every commit), stored bytes and the dedup ratio, per repo and in all;
    the whole copies kept for plain-HTTP downloads are counted apart (`copy_bytes`)."""
    hub_stats = _xet(data).stats()

    def ratio(logical: int, stored: int) -> float | None:
        return round(logical / stored, 3) if stored else None

    if as_json:
        result = {
            "logical_bytes": hub_stats.logical_bytes,
            "stored_bytes": hub_stats.stored_bytes,
            "xorb_bytes": hub_stats.xorb_bytes,
            "blob_bytes": hub_stats.blob_bytes,
            "copy_bytes": hub_stats.copy_bytes,
            "dedup_ratio": ratio(hub_stats.logical_bytes, hub_stats.stored_bytes),
            "repos": [
                dataclasses.asdict(r) | {"dedup_ratio": ratio(r.logical_bytes, r.stored_bytes)}
                for r in hub_stats.repos
            ],
        }
        print(json.dumps(result, indent=2))
        return
    from rich.table import Table

    table = Table("repo", "type", "logical", "stored", "ratio")
    for r in hub_stats.repos:
        table.add_row(
            r.repo_id,
            r.repo_type,
            _size(r.logical_bytes),
            _size(r.stored_bytes),
            str(ratio(r.logical_bytes, r.stored_bytes)),
        )
    table.add_row(
        "(hub)",
        "",
        _size(hub_stats.logical_bytes),
        _size(hub_stats.stored_bytes),
        str(ratio(hub_stats.logical_bytes, hub_stats.stored_bytes)),
    )
    out.print(table)
    if hub_stats.copy_bytes:
        out.print(
            f"whole copies for plain-HTTP downloads (not counted as stored): {_size(hub_stats.copy_bytes)}"
        )


@app.command()
def reindex(data: DataOption = None) -> None:
    """Render the cards and derive the model_info facts and listing index of every repo's main branch, and
    the file facts (file-page tensor summaries) of its other branches and tags, for repos committed before
    this hub version (commits derive them themselves)."""
    from weightyard.auth import LOCAL_ADMIN
    from weightyard.repos import REPO_TYPES

    hub = _open(data, create=False)
    count = 0
    for repo_type in REPO_TYPES:
        for repo in hub.repos.list_repos(LOCAL_ADMIN, repo_type, limit=2**31):
            hub.facts.reindex(repo)
            count += 1
    out.print(f"Reindexed {count} repos")
