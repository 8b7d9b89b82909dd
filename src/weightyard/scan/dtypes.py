"""NumPy dtype descriptions read the way numpy reads them, without numpy: does a dtype hold Python objects
(so that its array is a pickle)? Every spelling numpy accepts counts: type strings (`'O'`, `'object'`,
`'i4,O'`, `'(2,)O'`), sub-array tuples, field lists and the dicts and strings numpy iterates as fields."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable


class Holds(enum.Enum):
    PLAIN = "plain"
    OBJECTS = "objects"
    UNKNOWN = "unknown"


# The type strings numpy itself writes (dtype.str) and the one-letter codes; anything else is unusual.
_PLAIN = re.compile(r"^[<>|=]?(?:[?bBhHiIlLqQnNpPefdgFDG]|[biufcSUVa]\d+|[mM]8(?:\[\d*[A-Za-z]+\])?)$")
_OBJECT = re.compile(r"^[<>|=]?O\d*$")
_MAX_DEPTH = 32


def descr_holds(descr: object, depth: int = 0) -> Holds:
    """What an array of dtype `descr` (as numpy.lib.format.descr_to_dtype receives it) holds."""
    if depth > _MAX_DEPTH:
        return Holds.UNKNOWN
    if isinstance(descr, str):
        if _OBJECT.match(descr) or descr in ("object", "object_", "O"):
            return Holds.OBJECTS
        if _PLAIN.match(descr):
            return Holds.PLAIN
        # Comma lists, sub-array prefixes and type names: an `O` anywhere may be an object field.
        return Holds.OBJECTS if "O" in descr or "object" in descr.lower() else Holds.UNKNOWN
    if isinstance(descr, tuple):
        # (base, shape): a sub-array of `base`.
        return descr_holds(descr[0], depth + 1) if len(descr) == 2 else Holds.UNKNOWN
    if isinstance(descr, list | dict):
        # numpy iterates the description; each field is (name, type) or (name, type, shape), and a
        # two- or three-character string unpacks just the same.
        return combine(
            descr_holds(field[1], depth + 1)
            if isinstance(field, str | tuple | list) and len(field) in (2, 3)
            else Holds.UNKNOWN
            for field in descr
        )
    return Holds.UNKNOWN


def combine(parts: Iterable[Holds]) -> Holds:
    seen = set(parts)
    if Holds.OBJECTS in seen:
        return Holds.OBJECTS
    return Holds.UNKNOWN if Holds.UNKNOWN in seen else Holds.PLAIN
