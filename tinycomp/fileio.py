"""Reading inputs with clear errors and writing outputs atomically.

Every output goes to a temporary file in the target's directory and is renamed over the
target only when complete, so a failed or interrupted step never leaves a half-written file
that Make would take for a finished target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinycomp.errors import InputFileError, OutputFileError
from tinycomp.limits import check_keras_archive

JsonDict = dict[str, Any]  # a JSON object as json.loads returns it

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENTIFIER = b"TFL3"
ZIP_MAGIC = b"PK\x03\x04"
KERAS_FORMATS = ("h5", "keras", "savedmodel", "signature")  # signature: a SavedModel without Keras metadata
KERAS_FORMATS_HINT = ("give a Keras model: an .h5 or .keras file (tf_keras or Keras 3) or a "
                      "SavedModel directory")


def check_input_file(path: str | os.PathLike, kind: str = "file") -> Path:
    """Return `path` as a Path if it is an existing, non-empty, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{kind} not found", str(p), "check the path")
    if p.is_dir():
        raise InputFileError(f"{kind} is a directory, not a file", str(p), "give a file path")
    if p.stat().st_size == 0:
        raise InputFileError(f"{kind} is empty", str(p), "re-create it with the step that writes it")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{kind} is not readable", str(p), "check its permissions")
    return p


def read_bytes(path: str | os.PathLike, kind: str = "file") -> bytes:
    """Read a whole input file after `check_input_file`."""
    p = check_input_file(path, kind)
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {kind}: {e.strerror}", str(p)) from e


def read_text(path: str | os.PathLike, kind: str = "file") -> str:
    """Read a UTF-8 text input file after `check_input_file`."""
    data = read_bytes(path, kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{kind} is not UTF-8 text", str(path), "give a YAML text file") from e


def is_tflite_file(path: str | os.PathLike) -> bool:
    """True when `path` is a regular file with the .tflite flatbuffer identifier (by content, not name)."""
    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as f:
        return f.read(8)[4:8] == TFLITE_IDENTIFIER


def check_h5_file(path: str | os.PathLike) -> Path:
    """Check that `path` is a Keras .h5 (HDF5) file, not e.g. a .tflite."""
    p = check_input_file(path, "Keras model")
    with p.open("rb") as f:
        head = f.read(8)
    if head != HDF5_MAGIC:
        hint = "give a Keras .h5 model (from `tinycomp train` or `cluster`)"
        if len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER:
            raise InputFileError("this is a .tflite flatbuffer, not a Keras .h5 model", str(p), hint)
        raise InputFileError("not a Keras .h5 (HDF5) file", str(p), hint)
    return p


def check_keras_model_path(path: str | os.PathLike) -> Path:
    """Check that `path` is a Keras model in one of KERAS_FORMATS, by content, not by name.

    .h5 (HDF5 magic), .keras (a zip holding config.json) or a SavedModel directory with
    saved_model.pb. A .tflite flatbuffer gets its own message.
    """
    keras_model_format(path)
    return Path(path)


def keras_model_format(path: str | os.PathLike) -> str:
    """'h5', 'keras', 'savedmodel' (written by tf_keras) or 'signature' (a SavedModel without Keras
    metadata) for a model at `path`; InputFileError otherwise."""
    p = Path(path)
    if p.is_dir():
        return _check_saved_model_dir(p)
    p = check_input_file(p, "Keras model")
    with p.open("rb") as f:
        head = f.read(8)
    if head == HDF5_MAGIC:
        return "h5"
    if head[:4] == ZIP_MAGIC:
        return _check_keras_zip(p)
    if len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER:
        raise InputFileError("this is a .tflite flatbuffer, not a Keras model", str(p), KERAS_FORMATS_HINT)
    raise InputFileError("not a Keras model (neither .h5, .keras nor a SavedModel directory)", str(p),
                         KERAS_FORMATS_HINT)


def _check_saved_model_dir(p: Path) -> str:
    if not (p / "saved_model.pb").is_file():
        raise InputFileError("directory is not a SavedModel (no saved_model.pb)", str(p), KERAS_FORMATS_HINT)
    return "savedmodel" if (p / "keras_metadata.pb").is_file() else "signature"


def _check_keras_zip(p: Path) -> str:
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise InputFileError(f"not a readable .keras (zip) file: {e}", str(p), KERAS_FORMATS_HINT) from e
    if "config.json" not in names:
        hint = "an .npz holds data, not a model" if any(n.endswith(".npy") for n in names) else KERAS_FORMATS_HINT
        raise InputFileError("zip file has no config.json, so it is not a .keras model", str(p), hint)
    check_keras_archive(p)  # before anything inflates a member
    return "keras"


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Fail early if `output` cannot be written or would overwrite one of `inputs`."""
    out = Path(output)
    if out.is_dir():
        raise OutputFileError("output path is a directory", str(out), "give a file name, e.g. -o build/model.tflite")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputFileError("output directory does not exist", str(parent), "create it first (mkdir -p)")
    if not os.access(parent, os.W_OK):
        raise OutputFileError("output directory is not writable", str(parent), "choose another -o/--output")
    for inp in inputs:
        if inp is not None and _same_path(out, Path(inp)):
            raise OutputFileError("output path is the same as an input", str(out), "write to a different file")
    return out


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only on success.

    The temporary name keeps the target's suffix, so writers that look at the extension
    (Keras's .h5 saver) behave as for the target.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `target` atomically."""
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(bytes(data))
    except OSError as e:
        raise OutputFileError(f"cannot write output: {e.strerror}", str(target)) from e
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def sidecar_path(output: str | os.PathLike, suffix: str) -> Path:
    """The file written next to an output, e.g. build/model.h5 → build/model.json."""
    return Path(output).with_suffix(suffix)


def write_json_atomic(target: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` as indented JSON, atomically."""
    return write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json_if_present(path: str | os.PathLike) -> dict | None:
    """A sidecar's contents, or None when it is absent or unreadable (sidecars are informative)."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
