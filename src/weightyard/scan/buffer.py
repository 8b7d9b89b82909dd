"""The byte container every parser reads: an in-memory bytes object or a read-only mmap of the file."""

from __future__ import annotations

import mmap

Data = bytes | mmap.mmap
