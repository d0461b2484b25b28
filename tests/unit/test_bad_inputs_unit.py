"""Bad inputs across the subcommands: each ends in one `Error:` line, the right exit code and no output.

Every case builds its arguments from the session `pipeline` artifacts and a fresh tmp dir, runs
the CLI in-process, and checks (1) the exit code (1 for errors, 2 for usage errors), (2) the
exact `Error: <what> (<where>) — <what to do>` line (a regex where a path or library message
varies), (3) that no Python traceback was printed and (4) that the `-o`/`--json` target does not
exist afterwards (or, when the target is an input, is byte-for-byte unchanged).
"""

from __future__ import annotations

import pytest

from helpers import run_cli


def test_debug_shows_traceback(tmp_path):
    """Without --debug one line; with --debug the exception propagates with its traceback."""
    from tinycomp.errors import InputFileError

    missing = tmp_path / "missing.h5"
    result = run_cli(["convert", missing, "-o", tmp_path / "m.tflite"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    with pytest.raises(InputFileError, match="Keras model not found") as info:
        run_cli(["--debug", "convert", missing, "-o", tmp_path / "m.tflite"])
    assert info.traceback, "no traceback"
