"""Team administration: users, organisations, tokens, the audit log, publishers' keys (on the configured
database: `WEIGHTYARD_DATABASE_URL`, else the data folder's; no server needed), and access requests to gated
repos (through a running hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from weightyard.cli.app import app
from weightyard.cli.hub import (
    EndpointOption,
    JsonOption,
    TokenOption,
    _check_repo,
    fail,
    hub_request,
)
from weightyard.cli.progress import out
from weightyard.errors import WeightyardError
from weightyard.names import ADMIN_USER

DataOption = Annotated[
    Path | None, typer.Option(help="Data folder (default: $WEIGHTYARD_DATA or ./.weightyard).")
]
# The administration commands need the data folder only for the embedded database.
AdminDataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data folder of a hub on its embedded database (default: $WEIGHTYARD_DATA or ./.weightyard); "
        "not used with WEIGHTYARD_DATABASE_URL.",
    ),
]

FullnameOption = Annotated[str | None, typer.Option("--fullname", help="Display name (shown by whoami).")]

user_app = typer.Typer(help="Manage users (on the configured database).", no_args_is_help=True)
org_app = typer.Typer(
    help="Manage organisations and their members (on the configured database).", no_args_is_help=True
)
token_app = typer.Typer(help="Manage access tokens (on the configured database).", no_args_is_help=True)
access_app = typer.Typer(help="Access requests to gated repos (through a running hub).", no_args_is_help=True)
key_app = typer.Typer(help="Publishers' signing keys (on the configured database).", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
app.add_typer(access_app, name="access")
app.add_typer(key_app, name="key")


def _local_admin() -> Any:
    # Imported on use: the accounts layer pulls in the database, which no other command needs at start-up.
    from weightyard.auth import LOCAL_ADMIN

    return LOCAL_ADMIN


def _hub(data: Path | None) -> Any:
    """The configured database's accounts, audit log and keys (`Administration`); an embedded hub's data
    folder that holds none is refused (never created here)."""
    from weightyard.config import Settings
    from weightyard.hub import Administration
    from weightyard.maintenance.startup import StartupError

    try:
        return Administration.open(Settings.for_data(data))
    except StartupError as exc:
        raise fail(str(exc), exc.exit_code) from None


def _print(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    out.print(table)


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name (also their namespace).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make a site administrator.")] = False,
    fullname: FullnameOption = None,
    data: AdminDataOption = None,
) -> None:
    """Create a user."""
    try:
        _hub(data).accounts.create_user(_local_admin(), name, admin, fullname)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Created user {name}{' (admin)' if admin else ''}")


@user_app.command("update")
def user_update(
    name: Annotated[str, typer.Argument(help="User name.")],
    fullname: Annotated[str, typer.Option("--fullname", help="Display name.")],
    data: AdminDataOption = None,
) -> None:
    """Change a user's display name."""
    try:
        _hub(data).accounts.update_user(_local_admin(), name, fullname)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Updated user {name}")


@user_app.command("delete")
def user_delete(
    name: Annotated[str, typer.Argument(help="User name.")],
    delete_repos: Annotated[
        bool, typer.Option("--delete-repos", help="Also delete every repo in the user's namespace.")
    ] = False,
    data: AdminDataOption = None,
) -> None:
    """Delete a user; their tokens stop working at once and their name is retired for good. A user who owns
    repos is refused unless --delete-repos says to delete those too."""
    try:
        deleted = _hub(data).accounts.delete_user(_local_admin(), name, delete_repos=delete_repos)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(
        f"Deleted user {name}" + (f" and {len(deleted)} repo(s): {', '.join(deleted)}" if deleted else "")
    )


@user_app.command("list")
def user_list(as_json: JsonOption = False, data: AdminDataOption = None) -> None:
    """List users and their organisations."""
    rows = [
        {"name": u.name, "fullname": u.fullname, "admin": u.is_admin, "orgs": u.orgs}
        for u in _hub(data).accounts.list_users(_local_admin())
    ]
    _print(rows, ["name", "fullname", "admin", "orgs"], as_json)


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Argument(help="Organisation name.")],
    fullname: FullnameOption = None,
    data: AdminDataOption = None,
) -> None:
    """Create an organisation (add its members with `org add-member`)."""
    try:
        _hub(data).accounts.create_org(_local_admin(), name, fullname)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Created organisation {name}")


@org_app.command("update")
def org_update(
    name: Annotated[str, typer.Argument(help="Organisation name.")],
    fullname: Annotated[str, typer.Option("--fullname", help="Display name.")],
    data: AdminDataOption = None,
) -> None:
    """Change an organisation's display name."""
    try:
        _hub(data).accounts.update_org(_local_admin(), name, fullname)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Updated organisation {name}")


@org_app.command("add-member")
def org_add_member(
    org: Annotated[str, typer.Argument(help="Organisation.")],
    user: Annotated[str, typer.Argument(help="User.")],
    role: Annotated[str, typer.Option(help="read, contributor, write or admin.")] = "read",
    data: AdminDataOption = None,
) -> None:
    """Add a member to an organisation, or change their role."""
    from weightyard.auth import ROLES

    if role not in ROLES:
        raise fail(f"--role must be one of {', '.join(ROLES)}", 2)
    try:
        _hub(data).accounts.set_member(_local_admin(), org, user, role)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"{user} is now {role} in {org}")


@org_app.command("remove-member")
def org_remove_member(
    org: Annotated[str, typer.Argument(help="Organisation.")],
    user: Annotated[str, typer.Argument(help="User.")],
    data: AdminDataOption = None,
) -> None:
    """Remove a member from an organisation."""
    try:
        _hub(data).accounts.remove_member(_local_admin(), org, user)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"{user} left {org}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the token by.")],
    user: Annotated[str, typer.Option(help="The user the token acts as.")] = ADMIN_USER,
    scope: Annotated[str, typer.Option(help="read or write.")] = "write",
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", help="Limit the token to this repo or namespace (repeatable)."),
    ] = None,
    expires_in: Annotated[int | None, typer.Option("--expires-in", help="Days until it expires.")] = None,
    data: AdminDataOption = None,
) -> None:
    """Create a token and print its secret (shown once; only a hash is stored)."""
    try:
        secret = _hub(data).accounts.create_token(_local_admin(), user, name, scope, repo, expires_in)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    print(secret)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    user: Annotated[str, typer.Option(help="Its user.")] = ADMIN_USER,
    data: AdminDataOption = None,
) -> None:
    """Revoke a token; it stops working at once."""
    try:
        _hub(data).accounts.revoke_token(_local_admin(), user, name)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Revoked token {name} of {user}")


@token_app.command("list")
def token_list(
    user: Annotated[str, typer.Option(help="Whose tokens.")] = ADMIN_USER,
    as_json: JsonOption = False,
    data: AdminDataOption = None,
) -> None:
    """List a user's tokens (names and scopes; secrets are never stored)."""
    try:
        tokens = _hub(data).accounts.list_tokens(_local_admin(), user)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    rows = [
        {
            "name": t.name,
            "scope": t.scope,
            "repos": list(t.targets) if t.targets else None,
            "expires": t.expires_at,
            "revoked": t.revoked_at,
        }
        for t in tokens
    ]
    _print(rows, ["name", "scope", "repos", "expires", "revoked"], as_json)


@app.command("audit-log")
def audit_log(
    repo: Annotated[str | None, typer.Option(help="Only entries about this repo.")] = None,
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 100,
    as_json: JsonOption = False,
    data: AdminDataOption = None,
) -> None:
    """Every write the hub recorded: who, when, what and from where."""
    rows = [entry.to_dict() for entry in _hub(data).audit.entries(repo, limit)]
    _print(rows, ["at", "actor", "origin", "action", "repo", "details"], as_json)


def _access_call(
    repo: str, endpoint: str | None, token: str | None, method: str, path: str, body: Any
) -> Any:
    _check_repo(repo)
    return hub_request(endpoint, token, method, f"/api/models/{repo}/{path}", body).json()


@access_app.command("request")
def access_request(
    repo: Annotated[str, typer.Argument(help="The gated repo.")],
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Ask for access to a gated repo's files."""
    answer = _access_call(repo, endpoint, token, "POST", "ask-access", {})
    out.print(f"Access to {repo}: {answer['status']}")


@access_app.command("list")
def access_list(
    repo: Annotated[str, typer.Argument(help="The gated repo.")],
    status: Annotated[str, typer.Option(help="pending, accepted or rejected.")] = "pending",
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """List access requests (repo admins)."""
    items = _access_call(repo, endpoint, token, "GET", f"user-access-request/{status}", None)
    rows = [{"user": i["user"]["user"], "status": i["status"], "since": i["timestamp"]} for i in items]
    _print(rows, ["user", "status", "since"], as_json)


def _decide(repo: str, user: str, status: str, endpoint: str | None, token: str | None) -> None:
    _access_call(
        repo, endpoint, token, "POST", "user-access-request/handle", {"user": user, "status": status}
    )
    out.print(f"{user}: {status} on {repo}")


@access_app.command("accept")
def access_accept(
    repo: Annotated[str, typer.Argument()],
    user: Annotated[str, typer.Argument()],
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Accept a user's access request."""
    _decide(repo, user, "accepted", endpoint, token)


@access_app.command("reject")
def access_reject(
    repo: Annotated[str, typer.Argument()],
    user: Annotated[str, typer.Argument()],
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Reject a user's access request."""
    _decide(repo, user, "rejected", endpoint, token)


@key_app.command("add")
def key_add(
    user: Annotated[str, typer.Argument(help="The publisher.")],
    public_key: Annotated[Path, typer.Argument(help="PEM public key (ECDSA P-256, P-384 or P-521).")],
    data: AdminDataOption = None,
) -> None:
    """Register a publisher's public key; signatures it makes are verified when pushed."""
    if not public_key.is_file():
        raise fail(f"{public_key} is not a file", 2)
    try:
        key = _hub(data).keys.add(_local_admin(), user, public_key.read_bytes())
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Registered {key.curve} key {key.fingerprint} for {user}")


@key_app.command("revoke")
def key_revoke(
    user: Annotated[str, typer.Argument(help="The publisher.")],
    fingerprint: Annotated[str, typer.Argument(help="The key's fingerprint (see `key list`).")],
    reason: Annotated[str, typer.Option(help="Why (kept with the key and in the audit log).")],
    data: AdminDataOption = None,
) -> None:
    """Revoke a key: signatures arriving from now on are invalid; earlier ones are "revoked later"."""
    try:
        _hub(data).keys.revoke(_local_admin(), user, fingerprint, reason)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None
    out.print(f"Revoked key {fingerprint} of {user}")


@key_app.command("list")
def key_list(
    user: Annotated[str | None, typer.Argument(help="Only this publisher's keys.")] = None,
    as_json: JsonOption = False,
    data: AdminDataOption = None,
) -> None:
    """List registered keys and their revocation state."""
    rows = [key.to_dict() for key in _hub(data).keys.list_keys(user)]
    _print(rows, ["user", "fingerprint", "curve", "createdAt", "revokedAt", "revokeReason"], as_json)
