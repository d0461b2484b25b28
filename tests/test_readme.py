"""README.md cannot drift from the code: its command reference is --help, and its claims hold."""

from __future__ import annotations

from pathlib import Path

from tinycomp.cli_reference import END, START, cli_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_command_reference_is_the_current_help():
    text = README.read_text("utf-8")
    section = text[text.index(START):text.index(END) + len(END)]
    assert section == cli_reference(), "README.md's command reference is stale: run `make docs`"


def test_every_command_is_in_the_readme_reference():
    from tinycomp.cli import cli

    text = README.read_text("utf-8")
    for name in cli.commands:
        assert f"### `tinycomp {name}`" in text
