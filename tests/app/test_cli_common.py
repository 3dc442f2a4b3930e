"""How the CLI reports a service's domain error: one line on stderr, a non-zero exit."""

from __future__ import annotations

import pytest
import typer

from app.cli_common import clear_errors
from app.domain_errors import InvalidInput, UnknownDevice


def test_a_domain_error_is_one_line_and_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info, clear_errors():
        raise UnknownDevice("no device named\n  'pi5'")
    assert exit_info.value.exit_code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: no device named 'pi5'"]


def test_details_stay_out_of_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    error = InvalidInput("row 2, field arch: bad cell", [{"row": 2, "field": "arch"}] * 30)
    with pytest.raises(typer.Exit), clear_errors():
        raise error
    assert capsys.readouterr().err.strip() == "error: row 2, field arch: bad cell"
