"""The README and the reference page say what the product does today: the device count the
import gives, commands that exist, one API key from `make run` to the first request, and a
settings table that matches the settings."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from app.cli import cli
from app.settings import Settings
from devices.reference import REFERENCE_TABLES, load_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


def test_the_reference_device_count_is_what_the_import_gives() -> None:
    said = re.search(r"lists the (\d+) reference device\s+settings", README)
    assert said, "the README names how many reference devices the import gives"
    devices = sum(len(load_table(name).devices) for name in REFERENCE_TABLES)
    assert int(said.group(1)) == devices


def _commands() -> set[str]:
    """Every command path of the CLI: ``optimize``, ``predictors train``, ..."""
    root = typer.main.get_command(cli)
    found: set[str] = set()

    def walk(group: object, prefix: str) -> None:
        for name, command in getattr(group, "commands", {}).items():  # a group's commands
            found.add(f"{prefix}{name}")
            walk(command, f"{prefix}{name} ")

    walk(root, "")
    return found


def test_every_command_the_readme_runs_exists() -> None:
    commands = _commands()
    ran = re.findall(r"^(?:EDGEOPT_\w+=\S+ )?edgeopt ([a-z-]+(?: [a-z-]+)?)", README, re.M)
    assert len(ran) >= 8
    for words in ran:
        assert words in commands or words.split()[0] in commands, words


def test_the_key_make_run_starts_with_is_the_one_the_first_request_sends() -> None:
    started = re.search(r"EDGEOPT_API_KEYS=(\S+) make run", README)
    assert started, "the quick start sets the key `make run` serves with"
    sent = re.findall(r"X-API-Key: ([^'\"\s]+)", README)
    assert sent and set(sent) == {started.group(1)}


def test_the_settings_table_lists_every_setting() -> None:
    listed = set(re.findall(r"^\| `(EDGEOPT_\w+)`(?:, `(EDGEOPT_\w+)`)?", REFERENCE, re.M))
    names = {n for pair in listed for n in pair if n}
    fields = {f"EDGEOPT_{name.upper()}" for name in Settings.model_fields}
    assert fields <= names, f"not in docs/reference.md: {sorted(fields - names)}"
