"""CLI surface: help for every command, lazy TensorFlow imports, usage errors."""

import subprocess
import sys

import pytest

from conftest import run_cli

COMMANDS = ["train", "cluster", "convert", "quantize", "find-tensors", "compress", "eval"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_cli([command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"tinycomp {command}" in result.output


@pytest.mark.parametrize("args", [["--help"], ["find-tensors", "--help"], ["compress", "--help"]])
def test_help_find_tensors_and_compress_do_not_import_tensorflow(args):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            f"r = CliRunner().invoke(cli, {args!r})\nassert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_find_tensors_and_compress_run_without_tensorflow(pipeline, tmp_path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['find-tensors', {str(pipeline['clustered_int8_tflite'])!r}, '--clustering',"
            f" {str(pipeline['clustered_yaml'])!r}, '-o', {str(tmp_path / 'c.yaml')!r}])\nassert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(cli, ['compress', {str(pipeline['clustered_int8_tflite'])!r}, '--spec',"
            f" {str(tmp_path / 'c.yaml')!r}, '-o', {str(tmp_path / 'c.tflite')!r}])\nassert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "tinycomp", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "tinycomp" in result.stdout


def test_cluster_needs_exactly_one_way_to_name_layers(tmp_path):
    result = run_cli(["cluster", "m.h5", "-o", tmp_path / "c.h5"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: choose the layers with exactly one of --spec, --layer or --all (cluster) "
                                     "— e.g. --spec specs/clustering.yaml")
