from devices.fingerprint import fingerprint
from search.fingerprint import choose


def test_shipped_fingerprints_are_what_the_reference_data_chooses() -> None:
    for space in ("nb201", "fbnet"):
        assert fingerprint(space) == choose(space)
