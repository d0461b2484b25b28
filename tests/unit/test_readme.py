"""The docs cannot drift from the code: docs/cli.md is --help, README.md stays short, and every option
the README, docs/ and the Makefile pass exists."""

from __future__ import annotations

from pathlib import Path

from tinycomp.cli_reference import END, START, cli_reference

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLI_REFERENCE = REPO / "docs" / "cli.md"
README_MAX_LINES = 350


def test_command_reference_is_the_current_help():
    text = CLI_REFERENCE.read_text("utf-8")
    section = text[text.index(START):text.index(END) + len(END)]
    assert section == cli_reference(), "docs/cli.md is stale: run `make docs`"


def test_readme_is_short():
    assert len(README.read_text("utf-8").splitlines()) <= README_MAX_LINES


def test_every_command_is_in_the_reference():
    from tinycomp.cli import cli

    text = CLI_REFERENCE.read_text("utf-8")
    for name in cli.commands:
        assert f"### `tinycomp {name}`" in text


def _options_of(command_name: str) -> set[str]:
    from tinycomp.cli import cli

    command = cli if command_name == "" else cli.commands[command_name]
    options = {"--help", "-h"}
    for param in command.params:
        options.update(getattr(param, "opts", ()))
        options.update(getattr(param, "secondary_opts", ()))
    return options


def _invocations(text: str, prefix: str) -> list[tuple[str, list[str]]]:
    """(command, option tokens) for every `PREFIX <command> ...` in `text` (up to a backtick or line end)."""
    import re

    from tinycomp.cli import cli

    found = []
    for line in text.splitlines():
        for match in re.finditer(re.escape(prefix) + r"((?:--debug )?)([a-z][a-z-]*)([^`\n]*)", line):
            name = match.group(2)
            if name in cli.commands:
                tokens = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", match.group(3))
                found.append((name, [t.split("=")[0] for t in tokens]))
    return found


def test_every_option_the_readme_and_makefile_pass_exists():
    """Each `tinycomp CMD --opt` in README.md and docs/ and `$(TINYCOMP) CMD --opt` in the Makefile names a real option."""
    docs = [path.read_text("utf-8") for path in [README, *sorted((REPO / "docs").glob("*.md"))] if path != CLI_REFERENCE]
    makefile = (REPO / "Makefile").read_text("utf-8")
    invocations = [found for text in docs for found in _invocations(text, "tinycomp ")]
    invocations += _invocations(makefile, "$(TINYCOMP) ")
    assert len(invocations) > 20
    unknown = [(name, token) for name, tokens in invocations for token in tokens
               if token not in _options_of(name)]
    assert not unknown, f"options the docs pass that do not exist: {unknown}"
