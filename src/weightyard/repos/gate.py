"""The one gate: may this principal receive this content?

Every path that releases bytes, or that lets a client act as if it held them, asks here:

- by repo and path (`require_file`, `may_serve_file`): `/resolve`, Xet read tokens' reconstructions, the web
  file pages and their `.json`. The principal needs the download right on the repo (readable, and past the
  gate of a gated repo) and the file must not be quarantined there (an unsafe file under the refuse or
  quarantine policy is served to the repo's admins only).
- by content (`may_receive`, `may_receive_xet`, `may_receive_xorb`): commits naming a sha256 or a Xet hash,
  LFS batch "already stored" answers, Xet dedup answers, shard references, reconstructions through write
  tokens and signed fetch URLs. The principal must have uploaded the bytes itself, or hold the download right
  (as above) on at least one repo that holds the content.

The content answers are one query over the `repo_contents` index (maintained at commit time), with the same
shape whether or not the content exists anywhere: neither the answer nor its cost tells an uploader about
content it may not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa

from weightyard.auth import Action, Principal, can, namespaces_with, require
from weightyard.db import tables
from weightyard.errors import Quarantined
from weightyard.repos.scanning import scan_state
from weightyard.scan import Report, Verdict

if TYPE_CHECKING:
    from weightyard.repos.objects import FileEntry
    from weightyard.repos.scanning import ScanService
    from weightyard.repos.service import Repo

_NOTHING = sa.false()


class ContentGate:
    def __init__(self, engine: sa.Engine, scans: ScanService, default_policy: str) -> None:
        self._engine = engine
        self._scans = scans
        self._default_policy = default_policy

    # ------------------------------------------------------------------ by repo

    def gate_passed(self, principal: Principal | None, repo: Repo) -> bool:
        """Whether `principal`'s request for access to the gated `repo` was accepted."""
        if principal is None or not repo.gated:
            return False
        with self._engine.connect() as conn:
            status = conn.execute(
                sa.select(tables.access_requests.c.status).where(
                    tables.access_requests.c.repo_id == repo.id,
                    tables.access_requests.c.user_id == principal.user_id,
                )
            ).scalar()
        return status == "accepted"

    def may_download(self, principal: Principal | None, repo: Repo) -> bool:
        """The repo-level half of the gate: readable, and past the gate of a gated repo."""
        return can(principal, Action.DOWNLOAD, repo.ref, self.gate_passed(principal, repo))

    def policy(self, repo: Repo) -> str:
        return repo.scan_policy or self._default_policy

    def require_file(self, principal: Principal | None, repo: Repo, path: str, entry: FileEntry) -> Report:
        """Raise what the client should see when `principal` may not receive the file at `path` of `repo`
        (`RepoNotFound`, `GatedRepo`, `Quarantined`); else return its scan report (for warnings)."""
        require(principal, Action.DOWNLOAD, repo.ref, self.gate_passed(principal, repo))
        # The stored report only (this runs inside GET and HEAD): a file without any verdict yet is held
        # back like an unsafe one until the background scan has run.
        report = self._scans.report(entry.sha256, path)
        why = self._quarantine(principal, repo, report)
        if why is not None:
            raise Quarantined(f"{path} is quarantined: {why}")
        return report

    def _quarantine(self, principal: Principal | None, repo: Repo, report: Report) -> str | None:
        """Why the file with `report` is held back from `principal` (who may download the repo), or None."""
        pending = scan_state(report) == "pending"
        if (
            (report.verdict is Verdict.UNSAFE or pending)
            and self.policy(repo) != "warn"
            and not can(principal, Action.ADMIN, repo.ref)
        ):
            return "it has not been scanned yet" if pending else "the scanner found it unsafe"
        return None

    def may_serve_file(self, principal: Principal | None, repo: Repo, path: str, entry: FileEntry) -> bool:
        return path in self.servable_files(principal, repo, {path: entry})

    def servable_files(
        self, principal: Principal | None, repo: Repo, files: Mapping[str, FileEntry]
    ) -> set[str]:
        """The paths of `files` that `require_file` would release to `principal`, decided together: the
        repo-level half once, and the files' stored reports in one query."""
        if not files or not can(principal, Action.DOWNLOAD, repo.ref, self.gate_passed(principal, repo)):
            return set()
        reports = self._scans.reports_of({path: entry.sha256 for path, entry in files.items()})
        return {path for path, report in reports.items() if self._quarantine(principal, repo, report) is None}

    # ------------------------------------------------------------------ by content

    def may_receive(self, principal: Principal | None, sha256: str) -> bool:
        """Whether `principal` may receive (or name in a commit) the content with this sha256."""
        return self._answer(principal, sa.select(sa.literal(sha256)).scalar_subquery(), None)

    def may_receive_xet(self, principal: Principal | None, file_hash: str) -> bool:
        """The same for content named by its Xet file hash."""
        xf = tables.xet_files
        shas = sa.select(xf.c.sha256).where(xf.c.file_hash == file_hash)
        return self._answer(principal, shas, None)

    def may_receive_xorb(self, principal: Principal | None, xorb_hash: str) -> bool:
        """Whether `principal` uploaded this xorb, or may receive some file made from it."""
        xf, xfx = tables.xet_files, tables.xet_file_xorbs
        shas = (
            sa.select(xf.c.sha256)
            .join(xfx, xfx.c.file_hash == xf.c.file_hash)
            .where(xfx.c.xorb_hash == xorb_hash)
        )
        return self._answer(principal, shas, xorb_hash)

    def _answer(
        self,
        principal: Principal | None,
        shas: sa.ScalarSelect[str] | sa.Select[tuple[str]],
        xorb_hash: str | None,
    ) -> bool:
        rc, r = tables.repo_contents, tables.repos
        holders = sa.select(rc.c.repo_id).join(r, r.c.id == rc.c.repo_id)
        holders = holders.where(
            rc.c.sha256.in_(shas) if isinstance(shas, sa.Select) else rc.c.sha256 == shas,
            sa.or_(r.c.private.is_(False), self._level(principal, Action.READ)),
            sa.or_(r.c.gated.is_(None), self._level(principal, Action.READ), self._accepted(principal)),
            # Not held back, as `require_file` decides per path: some verdict exists (a never-scanned file is
            # held back) and none says unsafe, under any file name or scanner version (the stricter reading).
            sa.or_(
                sa.func.coalesce(r.c.scan_policy, self._default_policy) == "warn",
                self._level(principal, Action.ADMIN),
                sa.and_(
                    sa.exists().where(tables.scan_reports.c.sha256 == rc.c.sha256),
                    ~sa.exists().where(
                        tables.scan_reports.c.sha256 == rc.c.sha256,
                        tables.scan_reports.c.verdict == Verdict.UNSAFE.value,
                    ),
                ),
            ),
        )
        ways = [sa.exists(holders)]
        if principal is not None:
            bg = tables.blob_grants
            granted = sa.select(bg.c.sha256).where(bg.c.user_id == principal.user_id)
            own = bg.c.sha256.in_(shas) if isinstance(shas, sa.Select) else bg.c.sha256 == shas
            ways.append(sa.exists(granted.where(own)))
            if xorb_hash is not None:
                xg = tables.xet_xorb_grants
                ways.append(sa.exists().where(xg.c.xorb_hash == xorb_hash, xg.c.user_id == principal.user_id))
        with self._engine.connect() as conn:
            return bool(conn.execute(sa.select(sa.or_(*ways))).scalar())

    @staticmethod
    def _level(principal: Principal | None, action: Action) -> sa.ColumnElement[bool]:
        """SQL for "the principal's role (capped by its token) allows `action` on the repo `r`"."""
        r = tables.repos
        namespaces, targets = namespaces_with(principal, action)
        if not namespaces:
            return _NOTHING
        clause = sa.true() if "*" in namespaces else r.c.namespace.in_(sorted(namespaces))
        if targets is None:
            return clause
        full_id = r.c.namespace + "/" + r.c.name
        return sa.and_(clause, sa.or_(r.c.namespace.in_(targets), full_id.in_(targets)))

    @staticmethod
    def _accepted(principal: Principal | None) -> sa.ColumnElement[bool]:
        if principal is None:
            return _NOTHING
        ar, r = tables.access_requests, tables.repos
        return sa.exists().where(
            ar.c.repo_id == r.c.id, ar.c.user_id == principal.user_id, ar.c.status == "accepted"
        )
