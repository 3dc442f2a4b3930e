"""Console helpers shared by the ``edgeopt`` command groups."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.exc import OperationalError

from app.db import SchemaBehindError
from app.domain_errors import DomainError
from app.settings import get_settings, redact_url

# Piped output is not cut to 80 columns, so it can be read by scripts and grep.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, however long
    return typer.Exit(1)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the errors a user can cause into a message and exit code 1, not a traceback.

    A service's :class:`~app.domain_errors.DomainError` (an unknown device, a job that already
    ended, a bad input) becomes its message on one line of stderr (the message already names
    the first bad row or field; the HTTP body carries the full details).
    """
    try:
        yield
    except DomainError as exc:
        raise fail(one_line(exc.message)) from exc
    except SchemaBehindError as exc:
        raise fail(str(exc)) from exc
    except OperationalError as exc:
        raise fail(
            f"cannot use the database ({redact_url(get_settings().database_url)}): "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise fail("; ".join(parts)) from exc
    except ValueError as exc:
        raise fail(str(exc)) from exc


def one_line(message: str) -> str:
    """A message on one line: newlines and runs of space folded, so scripts can grep it."""
    return " ".join(message.split())


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
    )


class JobProgress:
    """A job's progress on stderr from the moment it starts until it ends.

    On a terminal: a live bar (its clock ticks even between updates). Elsewhere (a pipe,
    ``docker logs``, CI) a live bar only shows at the end, so instead: a line at once, a line
    when progress or note change (at most every ``min_interval_s``) and one at least every
    ``every_s`` while nothing changes, so a long job never looks hung.
    """

    def __init__(self, description: str, every_s: float = 15.0, min_interval_s: float = 1.0):
        self.description = description
        self.every_s, self.min_interval_s = every_s, min_interval_s
        self.live = err.is_terminal and not err.is_dumb_terminal
        self._bar = progress_bar() if self.live else None
        self._task: TaskID | None = None
        self._state: tuple[float, str] = (0.0, "")
        self._printed: tuple[float, str] | None = None
        self._start = self._last = time.monotonic()

    def __enter__(self) -> JobProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=1.0, note="")
        else:
            self._line("started")
        return self

    def update(self, fraction: float, note: str | None = None) -> None:
        self._state = (fraction, note or "")
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=fraction, note=note or "")
            return
        since = time.monotonic() - self._last
        changed = self._state != self._printed
        if (changed and since >= self.min_interval_s) or since >= self.every_s:
            self._line()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._state != self._printed:
            self._line()

    def _line(self, note: str | None = None) -> None:
        fraction, current = self._state
        elapsed = timedelta(seconds=int(time.monotonic() - self._start))
        err.print(
            f"{self.description} {fraction:4.0%} {elapsed} {note or current}".rstrip(),
            markup=False,
            highlight=False,
        )
        self._printed, self._last = self._state, time.monotonic()
