"""CLI surface: help for every command, lazy TensorFlow imports, usage errors."""

import subprocess
import sys


def test_help_of_every_command_does_not_import_tensorflow():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            "for args in [['--help'], *([name, '--help'] for name in cli.commands)]:\n"
            "    r = CliRunner().invoke(cli, args)\n"
            "    assert r.exit_code == 0, r.output\n"
            "    loaded = [m for m in ('tensorflow', 'tf_keras', 'tflite_micro') if m in sys.modules]\n"
            "    assert not loaded, f'{args}: imported {loaded}'\n")
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
