"""The Make fragment users include (tinycomp/make/tinycomp.mk), `tinycomp makefile`, and `make compressed`."""

from pathlib import Path

from helpers import FRAGMENT, makefile_command


def test_makefile_command_prints_the_installed_fragment():
    from click.testing import CliRunner

    result = CliRunner().invoke(makefile_command(), [])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip()) == FRAGMENT.resolve() and FRAGMENT.is_file()
    helped = CliRunner().invoke(makefile_command(), ["--help"])
    assert helped.exit_code == 0 and "include $(shell tinycomp makefile)" in helped.output


def test_makefile_command_is_registered():
    from tinycomp.cli import cli

    assert "makefile" in cli.commands
