"""Fingerprint: the fixed designs every new device measures first, per space.

The sets are computed once (``search/fingerprint.py``: a greedy D-optimal choice over the
space's cost features and the main directions of latency variation across the reference
devices) and shipped here as JSON (``devices/fingerprints/<space>.json``), so that every
server and agent agrees on them even if the reference data grows. This module only reads
them: an agent needs the list, not the numerics that chose it.
"""

from __future__ import annotations

import json
from pathlib import Path

SIZE = 10
FOLDER = Path(__file__).parent / "fingerprints"


def fingerprint(space: str) -> list[str]:
    """The shipped fingerprint of a space."""
    path = FOLDER / f"{space}.json"
    if not path.is_file():
        raise ValueError(f"no fingerprint for space {space!r} (have nb201, fbnet)")
    return list(json.loads(path.read_text())["designs"])
