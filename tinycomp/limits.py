"""Size limits for untrusted inputs, checked against *declared* sizes before anything is inflated.

A small file must not inflate into unbounded memory. So before a zip member (of a `.keras` model or
an `.npz`) is read, its uncompressed size from the zip directory and its compression ratio are
compared with limits; before an `.npy` array is read, its header's shape × dtype; before a model's
architecture is read, the size of `.keras` `config.json`, of the `.h5` `model_config` attribute and
of a SavedModel's `keras_metadata.pb`. A refusal is one `TooLarge` error naming the file, the
member, its declared size and the limit, and what to do.

The limits are environment variables, so tests (and users with big machines) can change them:

- `TINYCOMP_MAX_ARRAY_BYTES` (default 2 GiB): the most one array may take in memory, raw or
  as float32 after preprocessing, and the most any zip member may inflate to. Memory-mapped data
  (`.npy`, uncompressed `.npz` members) is read from disk in batches and has no such limit.
- `TINYCOMP_MAX_CONFIG_BYTES` (default 32 MiB): a model's architecture JSON (real models need
  kilobytes to a few megabytes).
- `TINYCOMP_MAX_COMPRESSION_RATIO` (default 200): uncompressed ÷ compressed size of a zip member
  larger than 1 MiB. Real data compresses a few times; zeros compress about 1,000 times.

Zip members are read through `zipfile`, which never returns more than the declared size (a member
that inflates to more fails its CRC check), so checking the declared size bounds the memory.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tinycomp.errors import TooLarge

MIB = 1024**2
GIB = 1024**3
ARRAY_SETTING = "TINYCOMP_MAX_ARRAY_BYTES"
CONFIG_SETTING = "TINYCOMP_MAX_CONFIG_BYTES"
RATIO_SETTING = "TINYCOMP_MAX_COMPRESSION_RATIO"
DEFAULT_ARRAY_BYTES = 2 * GIB
DEFAULT_CONFIG_BYTES = 32 * MIB
DEFAULT_COMPRESSION_RATIO = 200.0
RATIO_CHECKED_FROM = MIB  # smaller members may compress well (a few rows of zeros) without harm
READ_CHUNK = 16 * MIB
CONFIG_MEMBERS = frozenset({"config.json", "metadata.json"})
CONFIG_HINT = "no real model needs this much: the file is damaged or hostile"


@dataclass(frozen=True)
class Limits:
    """The limits in force (read from the environment each time, so tests can lower them)."""

    array_bytes: int = DEFAULT_ARRAY_BYTES
    config_bytes: int = DEFAULT_CONFIG_BYTES
    compression_ratio: float = DEFAULT_COMPRESSION_RATIO


def current() -> Limits:
    """The limits from TINYCOMP_MAX_* environment variables, else the defaults."""
    return Limits(int(_setting(ARRAY_SETTING, DEFAULT_ARRAY_BYTES)), int(_setting(CONFIG_SETTING, DEFAULT_CONFIG_BYTES)),
                  float(_setting(RATIO_SETTING, DEFAULT_COMPRESSION_RATIO)))


def _setting(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise TooLarge(f"{name}={text!r} is not a number", "environment", f"unset it or give bytes, e.g. {int(default)}") from None
    if value <= 0:
        raise TooLarge(f"{name}={text!r} must be positive", "environment", f"unset it or give bytes, e.g. {int(default)}")
    return value


def check_declared(declared: int, limit: int, *, what: str, where: str, setting: str, hint: str) -> None:
    """TooLarge when `declared` bytes exceed `limit` (named by its `setting`)."""
    if declared > limit:
        raise TooLarge(f"{what} declares {declared:,} bytes, more than the limit of {limit:,} ({setting})", where,
                       f"{hint}; or raise {setting} if you trust the file and have the memory")


def check_zip_member(info: zipfile.ZipInfo, limit: int, *, where: str, setting: str, hint: str) -> None:
    """Refuse a zip member whose declared uncompressed size exceeds `limit` or whose compression
    ratio marks a bomb, from the zip directory alone (nothing is inflated)."""
    check_declared(info.file_size, limit, what=f"member {info.filename} (uncompressed)", where=where,
                   setting=setting, hint=hint)
    ratio_limit = current().compression_ratio
    if info.file_size > RATIO_CHECKED_FROM and info.file_size > ratio_limit * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        raise TooLarge(f"member {info.filename} declares {info.file_size:,} bytes compressed into {info.compress_size:,} "
                       f"(ratio {ratio:,.0f}:1, more than the limit of {ratio_limit:g}:1, {RATIO_SETTING}): "
                       "a compression bomb", where, f"{hint}; or raise {RATIO_SETTING} if you trust the file")


def read_zip_member(archive: zipfile.ZipFile, name: str, limit: int, *, where: str, setting: str, hint: str) -> bytes:
    """A member's bytes after `check_zip_member` (zipfile returns at most the declared size)."""
    info = archive.getinfo(name)
    check_zip_member(info, limit, where=where, setting=setting, hint=hint)
    with archive.open(info) as f:
        return read_capped(f, info.file_size)


def read_capped(stream: IO[bytes], size: int) -> bytes:
    """At most `size` bytes of `stream`, in bounded chunks."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(left, READ_CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_config_member(archive: zipfile.ZipFile, name: str, where: str) -> bytes:
    """A model's architecture member (e.g. .keras config.json) within the config limit."""
    return read_zip_member(archive, name, current().config_bytes, where=where, setting=CONFIG_SETTING, hint=CONFIG_HINT)


def check_keras_archive(path: Path) -> None:
    """Every member of a `.keras` zip within the limits: config.json and metadata.json within the
    config limit, the others (weights, assets) within the array limit, and all of them together too."""
    limits = current()
    hint = CONFIG_HINT
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    for info in infos:
        is_config = info.filename in CONFIG_MEMBERS
        check_zip_member(info, limits.config_bytes if is_config else limits.array_bytes, where=str(path),
                         setting=CONFIG_SETTING if is_config else ARRAY_SETTING, hint=hint)
    check_declared(sum(info.file_size for info in infos), limits.array_bytes, what="the .keras archive (all members)",
                   where=str(path), setting=ARRAY_SETTING, hint=hint)


def read_config_file(path: Path, what: str) -> bytes:
    """A model's architecture file (e.g. a SavedModel's keras_metadata.pb) within the config limit."""
    limit = current().config_bytes
    check_declared(path.stat().st_size, limit, what=what, where=str(path), setting=CONFIG_SETTING,
                   hint=CONFIG_HINT)
    return path.read_bytes()


def read_h5_attribute(attrs: object, name: str, where: str) -> Any:
    """An HDF5 attribute (e.g. .h5 `model_config`) within the config limit, or None when absent.

    A fixed-length string's size is declared by its type and shape and is checked before it is
    read; a variable-length one lives in the file's heap (HDF5 never compresses attributes, so it
    cannot exceed the file) and is checked once read."""
    import h5py
    import numpy as np

    if not isinstance(attrs, h5py.AttributeManager) or name not in attrs:
        return None
    limit = current().config_bytes
    hint = CONFIG_HINT
    attr = h5py.h5a.open(attrs._id, name.encode())  # the low-level handle: nothing is read yet
    count = int(np.prod(attr.shape)) if attr.shape else 1
    check_declared(count * attr.dtype.itemsize, limit, what=f"attribute {name}", where=where, setting=CONFIG_SETTING,
                   hint=hint)
    value = attrs[name]
    size = len(value) if isinstance(value, (bytes, str)) else 0
    check_declared(size, limit, what=f"attribute {name}", where=where, setting=CONFIG_SETTING, hint=hint)
    return value
