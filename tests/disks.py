"""A real full disk for tests: a small tmpfs mounted in the test's folder and filled up.

Mounting needs root (the test machines run as root); elsewhere the tests that use it skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def full_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """``folder``, a tmpfs of ``size`` filled to the last byte by the file ``filler``;
    remove ``filler`` to give the space back. Unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk under ``folder`` with one file; the file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (65536, 512):  # big blocks, then the last partial one
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (temporaries and lock files included)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())
