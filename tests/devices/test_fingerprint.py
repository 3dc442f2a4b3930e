from devices.fingerprint import SIZE, fingerprint
from search.spaces import get_space


def test_shipped_fingerprints_are_canonical_distinct_designs() -> None:
    for space in ("nb201", "fbnet"):
        shipped = fingerprint(space)
        assert len(shipped) == SIZE == len(set(shipped))
        assert all(get_space(space).canonical(d) == d for d in shipped)
