"""examples/ci/github-actions.yml uses only tinycomp commands, options and Make variables that exist."""

import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import FRAGMENT, makefile_command

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "github-actions.yml"
TINYCOMP_CALL = re.compile(r"(?<![\w/.-])tinycomp((?:[ \t]+[^\s\"'`)|;&\\]+)+)")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow):
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def scripts(workflow) -> list[str]:
    """Every `run:` script, with backslash continuations joined."""
    return [step["run"].replace("\\\n", " ") for step in steps(workflow) if "run" in step]


def help_of(args: list[str]) -> str:
    from tinycomp.cli import cli

    command = makefile_command() if args[:1] == ["makefile"] and "makefile" not in cli.commands else None
    result = CliRunner().invoke(command, ["--help"]) if command else CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"tinycomp {' '.join(args)} --help failed: {result.output}"
    return result.output


def test_every_tinycomp_command_and_option_exists(workflow):
    calls = [shlex.split(m.group(1)) for script in scripts(workflow) for m in TINYCOMP_CALL.finditer(script)]
    assert {c[0] for c in calls} >= {"makefile", "--version"}
    for words in calls:
        command = [] if words[0].startswith("-") else [words[0]]
        options = [w.split("=")[0] for w in (words if not command else words[1:]) if w.startswith("-")]
        text = help_of(command)
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"tinycomp {command} has no {option}"


def test_make_variables_and_targets_exist_in_the_fragment(workflow):
    fragment = FRAGMENT.read_text()
    defined = set(re.findall(r"^(TINYCOMP_\w+) \?=", fragment, re.M))
    targets = set(re.findall(r"^([\w-]+):", fragment, re.M))
    [make] = [line for script in scripts(workflow) for line in script.splitlines() if line.strip().startswith("make ")]
    words = shlex.split(make)
    assert words[1:3] == ["-f", "$(tinycomp makefile)"]
    variables = [w.split("=")[0] for w in words[3:] if "=" in w]
    assert variables and set(variables) <= defined, set(variables) - defined
    goals = [w for w in words[3:] if "=" not in w and not w.startswith("-")]
    assert goals == ["tinycomp-all"] and set(goals) <= targets


def test_artifacts_and_summary_survive_a_failed_budget(workflow):
    later = steps(workflow)[[s.get("name", "") for s in steps(workflow)].index(
        "Compress, evaluate, report, export, and gate on the budgets") + 1:]
    assert later and all(str(s.get("if")) == "always()" for s in later)
    uploaded = "\n".join(s["with"]["path"] for s in later if s.get("uses", "").startswith("actions/upload-artifact"))
    for suffix in (".compressed.tflite", ".compressed.cc", ".compressed.h", ".eval.json", ".report/"):
        assert f"build/${{{{ env.MODEL }}}}{suffix}" in uploaded, suffix
    assert any('>> "$GITHUB_STEP_SUMMARY"' in s.get("run", "") and "report/summary.md" in s.get("run", "")
               for s in later)
