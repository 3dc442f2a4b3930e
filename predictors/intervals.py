"""The one interval convention every prediction shares: central 90%, split conformal.

A prediction's interval says where the measured value lands 90% of the time (``LEVEL``).
Where an interval is a normal one, ``Z90`` turns its half-width into a standard deviation
and back (the optimizer's probabilities, a proxy's calibration, a record's run spread);
where it is set from held-out errors, :func:`conformal_quantile` picks the error that
covers a new design at least ``LEVEL`` of the time however few were held out.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.9
Z90 = 1.6448536269514722  # the standard normal's 0.95 quantile: central 90%


def conformal_quantile(error: np.ndarray, level: float = LEVEL) -> float:
    """The split-conformal quantile of held-out |errors|: the ceil((n + 1) level)-th
    smallest, the largest when n is too small for ``level``.

    The plain ``level`` quantile of n errors covers a new design with probability below
    ``level`` for small n (a model of 60 designs sets its interval on 12): on this host's
    tables at 75 designs the held-out coverage of the 90% interval was 0.76-0.98.
    """
    error = np.sort(np.asarray(error, dtype=float))
    if not len(error):
        return float("nan")
    rank = int(np.ceil((len(error) + 1) * level))
    return float(error[min(rank, len(error)) - 1])
