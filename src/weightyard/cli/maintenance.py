"""Operating a hub's data folder: `init`, `db upgrade`, `gc`, `fsck`, `backup` (docs/operations.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from weightyard.cli.accounts import DataOption
from weightyard.cli.app import app
from weightyard.cli.hub import JsonOption, fail
from weightyard.cli.progress import console
from weightyard.formatting import human_size

db_app = typer.Typer(help="The hub's database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _open(data: Path | None, create: bool) -> Any:
    from weightyard.config import Settings
    from weightyard.hub import Hub
    from weightyard.maintenance.startup import StartupError

    try:
        return Hub.open(Settings.for_data(data), create=create)
    except StartupError as exc:
        raise fail(str(exc), exc.exit_code) from None


@app.command()
def init(data: DataOption = None) -> None:
    """Create a data folder (database, admin user and token) without starting the hub; prints the admin
    token. An existing hub's folder is left as it is."""
    hub = _open(data, create=True)
    console.print(f"Data folder {hub.settings.data.resolve()} is ready.")
    print(hub.admin_token())
    hub.close()


@db_app.command("upgrade")
def db_upgrade(data: DataOption = None) -> None:
    """Bring the database schema up to date (SQLite hubs also do it themselves at start-up). Safe to run from
    several places at once: the migration is one write transaction, and a second one waits, then finds
    nothing left to do. With WEIGHTYARD_DATABASE_URL no data folder is needed."""
    from weightyard.config import Settings
    from weightyard.db import create_engine, migrate, schema_state
    from weightyard.maintenance.startup import (
        StartupError,
        check_data_folder,
        folder_lock,
        uses_default_database,
    )

    settings = Settings.for_data(data)
    embedded = uses_default_database(settings)
    try:
        if embedded:
            check_data_folder(settings, create=False)
    except StartupError as exc:
        raise fail(str(exc), exc.exit_code) from None
    engine = create_engine(settings.database_url_or_default())
    with folder_lock(settings) if embedded else contextlib.nullcontext():
        state = schema_state(engine)
        if not state.known:
            raise fail(f"the database has schema {state.current}, newer than this Weightyard knows", 3)
        migrate(engine)
    engine.dispose()
    console.print(f"Database schema: {state.current or 'none'} -> {state.head}")


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(text: str) -> datetime.timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 0s, 30m, 12h or 1d")
    return datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@app.command()
def gc(
    uploads_older_than: Annotated[
        str | None,
        typer.Option(
            "--uploads-older-than",
            help="Age past which an unfinished or uncommitted upload is abandoned, like 0s, 12h, 1d "
            "(default: 1d; unreferenced xorbs: 28d unless given).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed and how much; remove nothing.")
    ] = False,
    as_json: JsonOption = False,
    data: DataOption = None,
) -> None:
    """Remove abandoned uploads, files without a row, blobs and xorbs no commit reaches; report the bytes."""
    from weightyard.maintenance.gc import collect

    age = _duration(uploads_older_than) if uploads_older_than is not None else None
    hub = _open(data, create=False)
    report = collect(hub, age, dry_run=dry_run)
    if as_json:
        print(json.dumps(dataclasses.asdict(report)))
        return
    verb = "would free" if dry_run else "freed"
    lines = [
        ("abandoned uploads", report.uploads, report.upload_bytes),
        ("files without a row", report.orphans, report.orphan_bytes),
        ("unreferenced blobs", report.blobs, report.blob_bytes),
        ("unreferenced xorbs", report.xorbs, report.xorb_bytes),
    ]
    for label, count, size in lines:
        print(f"{label}: {count} ({human_size(size)})")
    print(f"{verb} {human_size(report.bytes_freed)}")


@app.command()
def fsck(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Fix what can be fixed: attestations, files without a row, abandoned uploads."
        ),
    ] = False,
    rehash: Annotated[
        bool, typer.Option("--hash", help="Also re-hash every stored blob and xorb (reads all content).")
    ] = False,
    as_json: JsonOption = False,
    data: DataOption = None,
) -> None:
    """Check the database against the stored blobs and xorbs. Exit 0: clean (or all repaired); 1: problems
    remain."""
    from weightyard.maintenance.fsck import check

    hub = _open(data, create=False)
    report = check(hub, rehash=rehash, repair=repair)
    if as_json:
        print(json.dumps({**dataclasses.asdict(report), "unresolved": len(report.unresolved)}))
    else:
        for problem in report.problems:
            if problem.repaired:
                outcome = "repaired"
            elif repair:
                outcome = "cannot be repaired here: restore it from a backup (docs/operations.md)"
            else:
                outcome = "repairable with --repair" if problem.repairable else "restore from a backup"
            print(f"{problem.kind}: {problem.message} [{outcome}]")
        checked = f"{report.blobs} blobs, {report.xorbs} xorbs, {report.commits} commits"
        if not report.problems:
            print(f"clean: {checked} checked")
        else:
            print(f"{len(report.problems)} problems, {len(report.unresolved)} unresolved: {checked} checked")
    if report.unresolved:
        raise typer.Exit(1)


@app.command()
def backup(
    target: Annotated[
        Path, typer.Argument(help="Folder to write the backup to (empty, or an earlier backup).")
    ],
    as_json: JsonOption = False,
    data: DataOption = None,
) -> None:
    """Copy the database (a consistent snapshot, safe while the hub serves) and the blob and xorb folders into
    TARGET, which is then a data folder the hub can start on (see docs/operations.md, Restore)."""
    from weightyard.maintenance.backup import BackupError
    from weightyard.maintenance.backup import backup as make_backup

    hub = _open(data, create=False)
    try:
        report = make_backup(hub, target)
    except BackupError as exc:
        raise fail(str(exc), 2) from None
    if as_json:
        print(json.dumps(dataclasses.asdict(report)))
        return
    print(
        f"Backed up to {report.target}: {report.files_copied} files copied "
        f"({human_size(report.bytes_copied)}), {report.files_present} already there"
    )
