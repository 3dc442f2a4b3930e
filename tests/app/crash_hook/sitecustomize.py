"""A crash at a chosen point, for tests of real worker processes: with this folder on
PYTHONPATH and EDGEOPT_TEST_KILL_AFTER_FLUSH=<model class name>, the process kills itself
with SIGKILL right after it first flushes a new row of that class (inside its transaction,
before the commit): the instant between a job's final write and its end. The marker file
EDGEOPT_TEST_KILL_MARKER makes it happen once across all processes sharing it."""

from __future__ import annotations

import os
import signal

_CLASS = os.environ.get("EDGEOPT_TEST_KILL_AFTER_FLUSH")
_MARKER = os.environ.get("EDGEOPT_TEST_KILL_MARKER", "")

if _CLASS and _MARKER:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "after_flush")
    def _die_after_flush(session: Session, context: object) -> None:
        if not any(type(row).__name__ == _CLASS for row in session.new):
            return
        try:
            with open(_MARKER, "x") as marker:  # the first process to get here, only
                marker.write(str(os.getpid()))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
