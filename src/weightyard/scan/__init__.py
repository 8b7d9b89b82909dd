"""Static security scanning of model files.

`scan_file` inspects one file by content (never by extension) and returns a `Report` whose verdict is
`safe`, `suspicious`, `unsafe` or `unscannable`. Nothing in a scanned file is ever unpickled, imported,
evaluated or rendered. `scan_path` scans a folder and adds findings that need several files;
`check_references` does the same from stored reports, for a hub that scanned each blob once.
"""

from weightyard.scan.engine import scan_file
from weightyard.scan.folder import apply_context, check_references, scan_path
from weightyard.scan.limits import DEFAULT_LIMITS, Limits
from weightyard.scan.names import name_key
from weightyard.scan.report import (
    SCANNER_VERSION,
    Finding,
    PickleImport,
    Reference,
    Report,
    Severity,
    Verdict,
    worst_verdict,
)

__all__ = [
    "DEFAULT_LIMITS",
    "SCANNER_VERSION",
    "Finding",
    "Limits",
    "PickleImport",
    "Reference",
    "Report",
    "Severity",
    "Verdict",
    "apply_context",
    "check_references",
    "name_key",
    "scan_file",
    "scan_path",
    "worst_verdict",
]
