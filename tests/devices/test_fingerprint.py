from devices.fingerprint import SIZE, choose, fingerprint
from search.spaces import get_space


def test_shipped_fingerprints_are_what_the_reference_data_chooses() -> None:
    for space in ("nb201", "fbnet"):
        shipped = fingerprint(space)
        assert len(shipped) == SIZE == len(set(shipped))
        assert all(get_space(space).canonical(d) == d for d in shipped)
        assert shipped == choose(space)
