"""The result types every scanner returns: findings, a verdict, and a report keyed by scanner version."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def rules_digest(package: Path) -> str:
    """A digest of the scanner's code and rule tables (every module of the scan package): any change to
    what the scanner decides changes SCANNER_VERSION, so stored verdicts of older rules are known stale."""
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


SCANNER_VERSION = f"weightyard-scan/2+{rules_digest(Path(__file__).parent)}"


class Verdict(enum.StrEnum):
    SAFE = "safe"
    SUSPICIOUS = "suspicious"
    UNSAFE = "unsafe"
    UNSCANNABLE = "unscannable"


class Severity(enum.StrEnum):
    """How much a finding weighs; each severity maps onto exactly one verdict."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


# Order in which findings decide the verdict: one dangerous import outweighs a parse error after it.
_VERDICT_OF: dict[Severity, Verdict] = {
    Severity.CRITICAL: Verdict.UNSAFE,
    Severity.WARNING: Verdict.SUSPICIOUS,
    Severity.ERROR: Verdict.UNSCANNABLE,
}
_VERDICT_RANK: dict[Verdict, int] = {
    Verdict.SAFE: 0,
    Verdict.UNSCANNABLE: 1,
    Verdict.SUSPICIOUS: 2,
    Verdict.UNSAFE: 3,
}


@dataclass(frozen=True)
class Finding:
    """One observation. `location` says where (zip member, pickle opcode offset), `subject` what."""

    rule: str
    severity: Severity
    location: str
    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "location": self.location,
            "subject": self.subject,
            "message": self.message,
        }


@dataclass(frozen=True)
class Reference:
    """A pointer from this file to another file of the model folder, resolved by `check_references`."""

    kind: str
    target: str
    location: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "target": self.target, "location": self.location}


@dataclass(frozen=True)
class PickleImport:
    """A callable a pickle imports. `safety` uses the Hugging Face Hub's words (`innocuous`,
    `suspicious`, `dangerous`) so a hub can fill its `pickleImportScan` from it."""

    module: str
    name: str
    safety: str

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "name": self.name, "safety": self.safety}


def worst_verdict(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_VERDICT_RANK.__getitem__, default=Verdict.SAFE)


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    return worst_verdict(_VERDICT_OF[f.severity] for f in findings if f.severity in _VERDICT_OF)


@dataclass(frozen=True)
class Report:
    """The outcome of scanning one file. `to_dict` is the stable, documented JSON shape."""

    name: str
    format: str
    findings: tuple[Finding, ...] = ()
    references: tuple[Reference, ...] = ()
    imports: tuple[PickleImport, ...] = ()
    size: int = 0
    scanner_version: str = SCANNER_VERSION
    verdict: Verdict = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", verdict_of(self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "format": self.format,
            "size": self.size,
            "scanner_version": self.scanner_version,
            "findings": [f.to_dict() for f in self.findings],
            "references": [r.to_dict() for r in self.references],
            "imports": [i.to_dict() for i in self.imports],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report `to_dict` produced, as a hub reads it back from storage; the verdict is derived
        from the findings again, so a stored verdict can never disagree with them."""
        return cls(
            name=data["name"],
            format=data["format"],
            findings=tuple(
                Finding(f["rule"], Severity(f["severity"]), f["location"], f["subject"], f["message"])
                for f in data["findings"]
            ),
            references=tuple(Reference(r["kind"], r["target"], r["location"]) for r in data["references"]),
            imports=tuple(PickleImport(i["module"], i["name"], i["safety"]) for i in data["imports"]),
            size=data["size"],
            scanner_version=data["scanner_version"],
        )
