"""The artifacts folder: whether it can take a file, and writes that leave all or nothing.

A write that fails half-way (a full disk, a folder turned read-only) must not leave a file
that a later reader takes for a whole model: each artifact is written under a temporary
name in its final folder, then renamed into place (``os.replace``, atomic on one file
system); on any error the temporary is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def write_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Make ``folder`` by ``write(tmp)`` into a fresh sibling, renamed to ``folder`` once
    ``write`` returned; nothing of it stays behind when ``write`` fails."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.mkdir()
        write(tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file(path: Path, write: Callable[[Path], None]) -> None:
    """Make ``path`` by ``write(tmp)`` into a temporary file of its folder, renamed to
    ``path`` once ``write`` returned; the temporary is removed when ``write`` fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def folder_problem(folder: Path, min_free_mb: float) -> str | None:
    """Why the artifacts folder cannot take new artifacts now (missing, not writable, full),
    in words naming it; None when it can."""
    if not folder.is_dir():
        return f"artifacts folder {folder} is missing (or not a folder)"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".readyz-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"artifacts folder {folder} cannot be written: {exc.strerror or exc}"
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        return f"artifacts folder {folder} is full: {free_mb:.1f} MiB free, needs {min_free_mb:g}"
    return None
