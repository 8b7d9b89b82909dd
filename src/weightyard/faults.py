"""Named crash points, so the crash-repair tests can kill a real server at an exact step.

`WEIGHTYARD_CRASH_AT=commit.landed weightyard serve` dies by SIGKILL (what `kill -9` sends: no clean-up, no
`finally`) the first time the code passes `crash_point("commit.landed")`. Unset, a crash point costs one
environment lookup. The names are listed in docs/operations.md.
"""

from __future__ import annotations

import os
import signal

CRASH_AT = "WEIGHTYARD_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when `WEIGHTYARD_CRASH_AT` names this point."""
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
