"""Small presentation helpers shared by the CLI and the web pages."""

from __future__ import annotations


def human_size(size: int) -> str:
    """A byte count in decimal units, as file browsers show it.

    Example:
        >>> human_size(90_868_376)
        '90.9 MB'
    """
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
