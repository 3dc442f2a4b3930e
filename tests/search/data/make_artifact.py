"""Write ``learned-format1.pt``: the artifact of an earlier run that the tests load."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from devices.fingerprint import fingerprint
from devices.reference import load_reference
from search.learned import fit_learned, new_spec
from search.spaces import get_space


def main() -> None:
    ref = load_reference("nb201")
    space = get_space("nb201")
    columns = [d.column for d in ref.devices]
    devices = ["1080ti_1", "pixel3", "silver_4114"]
    position = {e: i for i, e in enumerate(ref.encodings)}
    accuracy = ref.accuracies["cifar10"]
    spec = replace(new_spec(space, "cifar10", fingerprint("nb201"), accuracy), hidden=32)
    model = fit_learned(
        ref.latency_ms[:, [columns.index(d) for d in devices]],
        devices,
        accuracy,
        space.decisions(ref.encodings),
        np.array([position[e] for e in fingerprint("nb201")]),
        spec,
        synthetic=50,
        epochs=2,
    )
    model.save(Path(__file__).parent / "learned-format1.pt")


if __name__ == "__main__":
    main()
