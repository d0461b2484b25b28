"""Helpers shared by the test modules: test modules never import each other or a conftest.

`tests/` is on sys.path (tests/conftest.py lives there), so a test says `from helpers import ok`.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FRAGMENT = REPO / "tinycomp" / "make" / "tinycomp.mk"
PNG = b"\x89PNG\r\n\x1a\n"
IMAGE = 16
CLASSES = 4


def make_blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: a bright 5×5 blob in one of four quadrants (the label), plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.integers(0, 60, size=(n, IMAGE, IMAGE)).astype(np.uint8)
    for i, label in enumerate(y):
        row, col = divmod(int(label), 2)
        r0 = row * 8 + rng.integers(0, 3)
        c0 = col * 8 + rng.integers(0, 3)
        x[i, r0:r0 + 5, c0:c0 + 5] = 255
    return x, y.astype(np.int64)


def save_subclassed_model(path: Path, inputs: int) -> Path:
    """A subclassed tf_keras model (a Dense layer in `call`), built and saved as a SavedModel at `path`."""
    import tf_keras

    class Net(tf_keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = tf_keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, inputs), np.float32))
    model.save(path, save_format="tf")
    return path


def run_cli(args: list[str]):
    """Invoke the CLI in-process; returns click's Result."""
    from click.testing import CliRunner

    from tinycomp.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="tinycomp", catch_exceptions=False)


def ok(args: list[str]):
    result = run_cli(args)
    assert result.exit_code == 0, f"tinycomp {' '.join(map(str, args))} failed:\n{result.output}"
    return result


def one_error_line(result, code: int, pattern: str) -> None:
    """`result` exited with `code`, and its last line is its only `Error: ` line, matching `pattern` (a regex)."""
    assert result.exit_code == code, result.output
    lines = result.output.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.output
    assert re.fullmatch(pattern, errors[0][len("Error: "):]), errors[0]


def int8_models(builds: dict) -> dict[str, bytes]:
    """{kind: int8 .tflite bytes} of one-layer-stack tf_keras models, `builds` = {kind: (input shape, layers)}:
    seeded, calibrated on 16 uniform rows, int8 I/O (per-channel weights, as the converter makes them)."""
    import tf_keras

    from tinycomp.convert import quantize

    models = {}
    for kind, (shape, body) in builds.items():
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([tf_keras.layers.Input(shape=shape), *body])
        calibration = np.random.default_rng(0).uniform(-1, 1, (16, *shape)).astype(np.float32)
        models[kind] = quantize(model, method="int8", io="int8", calibration=calibration)
    return models


def deprecated_opcodes(data: bytes) -> bytes:
    """The file as TensorFlow before 2.4 wrote it: the builtin code only in deprecated_builtin_code."""
    import flatbuffers

    from tinycomp.tflite.model import schema

    tflite = schema()
    model = tflite.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for code in model.operatorCodes:
        assert code.builtinCode < 127
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    builder = flatbuffers.Builder(len(data) * 2)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def makefile_command():
    from tinycomp.commands.makefile import command

    return command


# An eval JSON written before records carried a schema_version (read as version 1).
OLD_EVAL_JSON = """{"dataset": {"name": "mnist-sample"}, "baseline": "model.tflite", "flash_budget": null,
 "ram_budget": null, "models": [
  {"path": "model.tflite", "kind": "tflm", "flash_bytes": 469692, "accuracy": 0.921, "samples": 1000,
   "arena_bytes": 49024, "ms_per_inference": 1.1, "ratio_vs_baseline": 1.0, "accuracy_delta_pp": 0.0,
   "fits": null, "budget_notes": []},
  {"path": "compressed.tflite", "kind": "tflm", "flash_bytes": 79296, "accuracy": 0.948, "samples": 1000,
   "arena_bytes": 108624, "ms_per_inference": 1.2, "ratio_vs_baseline": 5.92, "accuracy_delta_pp": 2.7,
   "fits": null, "budget_notes": [], "alt_decompression_bytes": 102400, "arena_bytes_with_alt_decompression": 6224}]}
"""


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of an .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip (.npz, .keras) with these members, as written."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def damage_member(path: Path, name: str) -> None:
    """Zero a quarter of a zip member's compressed bytes past its middle (its first bytes stay readable)."""
    info = zipfile.ZipFile(path).getinfo(name)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    raw[start:start + info.compress_size // 4] = bytes(info.compress_size // 4)
    path.write_bytes(bytes(raw))
