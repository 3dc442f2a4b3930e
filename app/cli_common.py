"""Console helpers shared by the ``edgeopt`` command groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import OperationalError

from app.db import SchemaBehindError
from app.errors import ApiError
from app.settings import get_settings

# Piped output is not cut to 80 columns, so it can be read by scripts and grep.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the errors a user can cause into a message and exit code 1, not a traceback."""
    try:
        yield
    except ApiError as exc:
        raise fail(exc.message) from exc
    except SchemaBehindError as exc:
        raise fail(str(exc)) from exc
    except OperationalError as exc:
        raise fail(
            f"cannot use the database ({get_settings().database_url}): "
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


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
    )
