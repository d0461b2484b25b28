"""Raw arrays read within limits: `.npz` members and `.npy` files, known by their headers first.

A `RawArray` is an array known by its shape and dtype; its values are read only when asked for.
For an `.npz`, the header of each member (the first bytes of the member's `.npy`) gives shape and
dtype without inflating the data, and then:

- an uncompressed member (`numpy.savez`) is memory-mapped straight from the `.npz`, like an `.npy`;
- a compressed member (`numpy.savez_compressed`) is inflated in bounded chunks, and only after its
  declared size (zip directory, and the header's shape × dtype) passed the limits of
  `tinycomp.limits`; a refusal says to use an `.npy`, which is memory-mapped.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from tinycomp import limits
from tinycomp.errors import DataError
from tinycomp.fileio import check_input_file

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header (30 bytes)
LOCAL_SIGNATURE = b"PK\x03\x04"
NPZ_HINT = "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def too_large_hint(key: str) -> str:
    """What to do when an array is too large to hold in memory."""
    if key.startswith("x"):
        return (f"save {key} as X.npy (labels or targets as Y.npy, given with --targets), which is memory-mapped, "
                "or the .npz uncompressed with numpy.savez, whose members are memory-mapped too")
    return f"save {key} as Y.npy and give --data X.npy --targets Y.npy (memory-mapped)"


@dataclass(frozen=True)
class ArrayHeader:
    """An .npy header: shape, dtype and memory order."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize if self.shape else self.dtype.itemsize


class RawArray:
    """An array known by its header; `values()` reads it (once) within the limits.

    `on_disk` is True for memory-mapped arrays, whose rows are read from disk as they are indexed.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any], read: Callable[[], np.ndarray], *,
                 on_disk: bool, name: str, where: str, take: Callable[[np.ndarray], np.ndarray] | None = None):
        self.shape, self.dtype, self.on_disk = tuple(int(d) for d in shape), np.dtype(dtype), on_disk
        self.name, self.where = name, where
        self._read: Callable[[], np.ndarray] | None = read
        self._take = take
        self._values: np.ndarray | None = None

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows at `index`: for a compressed member not yet read, streamed out of it in one pass
        (only those rows are kept); else from the values."""
        if self._values is None and self._take is not None:
            return self._take(np.asarray(index))
        return self.values()[index]

    @classmethod
    def of(cls, array: np.ndarray, name: str = "array", where: str = "") -> RawArray:
        """An array already at hand (in memory, or a numpy memmap)."""
        return cls(array.shape, array.dtype, lambda: array, on_disk=isinstance(array, np.memmap), name=name,
                   where=where)

    @property
    def in_memory(self) -> bool:
        """Read already, or held in memory from the start (not a compressed member still to inflate)."""
        return self._values is not None or self._take is None

    def values(self) -> np.ndarray:
        if self._values is None:
            assert self._read is not None
            self._values, self._read = self._read(), None
        return self._values

    def __len__(self) -> int:
        return self.shape[0]


def read_header(stream: Any, where: str, key: str) -> ArrayHeader:
    """The .npy header at the start of `stream` (a bounded read: numpy caps header sizes)."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{key} is not a readable .npy array: {_first_line(e)}", where, NPZ_HINT) from e
    if dtype.hasobject:
        raise DataError(f"{key} holds Python objects (dtype {dtype}), which tinycomp does not load", where,
                        "save numbers, not objects")
    return ArrayHeader(tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran))


class NpzArchive:
    """The arrays of an .npz, read member by member: headers first, values only on request."""

    def __init__(self, path: Path):
        self.path = check_input_file(path, "dataset")
        self.where = str(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise DataError(f"not a readable .npz file: {_first_line(e)}", self.where, NPZ_HINT) from e
        self.members = {info.filename[:-4]: info for info in infos if info.filename.endswith(".npy")}
        self._headers: dict[str, tuple[ArrayHeader, int]] = {}

    @property
    def keys(self) -> list[str]:
        return list(self.members)

    def header(self, key: str) -> ArrayHeader:
        """The member's .npy header, from its first bytes (nothing else is inflated)."""
        if key not in self._headers:
            info = self.members[key]
            try:
                with zipfile.ZipFile(self.path) as archive, archive.open(info) as stream:
                    header = read_header(stream, self.where, key)
                    header_bytes = stream.tell()
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, RuntimeError, EOFError) as e:
                raise DataError(f"cannot read {key}: {_first_line(e)}", self.where, NPZ_HINT) from e
            if header.nbytes > info.file_size - header_bytes:
                raise DataError(f"{key}'s header declares {header.nbytes:,} bytes ({header.shape} {header.dtype}) "
                                f"but the member holds {max(info.file_size - header_bytes, 0):,}", self.where,
                                "the file is damaged: " + NPZ_HINT)
            self._headers[key] = (header, header_bytes)
        return self._headers[key][0]

    def memory_mapped(self, key: str) -> bool:
        """True when the member is stored uncompressed (and unencrypted), so it can be memory-mapped."""
        info = self.members[key]
        return info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1

    def check_inflatable(self, key: str) -> None:
        """TooLarge unless reading the member into memory stays within the limits (declared sizes only)."""
        header = self.header(key)
        if self.memory_mapped(key):
            return
        limit = limits.current().array_bytes
        limits.check_zip_member(self.members[key], limit, where=self.where, setting=limits.ARRAY_SETTING,
                                hint=too_large_hint(key))
        limits.check_declared(header.nbytes, limit, what=f"{key} ({'×'.join(map(str, header.shape))} {header.dtype})",
                              where=self.where, setting=limits.ARRAY_SETTING, hint=too_large_hint(key))

    def raw(self, key: str) -> RawArray:
        """The member as a RawArray: memory-mapped when stored, else inflated on first use."""
        header = self.header(key)
        if self.memory_mapped(key):
            return RawArray(header.shape, header.dtype, lambda: self._map(key), on_disk=True, name=key,
                            where=self.where)
        return RawArray(header.shape, header.dtype, lambda: self._inflate(key), on_disk=False, name=key,
                        where=self.where, take=lambda index: self._stream_rows(key, index))

    def _stream_rows(self, key: str, index: np.ndarray) -> np.ndarray:
        """The rows at `index` of a compressed member, inflated in bounded blocks in one pass; only the
        rows asked for are kept (a C-order array stores each row contiguously)."""
        header = self.header(key)
        self.check_inflatable(key)
        if header.fortran_order or len(header.shape) == 0:
            return self._inflate(key)[index]
        row_shape, rows = header.shape[1:], header.shape[0]
        row_bytes = max(int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize, 1)
        block_rows = max(1, limits.READ_CHUNK // row_bytes)
        order = np.argsort(index, kind="stable")
        wanted = np.asarray(index)[order]
        out = np.empty((len(wanted), *row_shape), header.dtype)
        filled = 0
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.members[key]) as stream:
                read_header(stream, self.where, key)
                for start in range(0, rows, block_rows):
                    if filled == len(wanted):
                        break
                    count = min(block_rows, rows - start)
                    block = np.frombuffer(limits.read_capped(stream, count * row_bytes), header.dtype)
                    block = block.reshape((count, *row_shape))
                    while filled < len(wanted) and wanted[filled] < start + count:
                        out[order[filled]] = block[wanted[filled] - start]
                        filled += 1
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as e:
            raise DataError(f"cannot read {key}: {_first_line(e)}", self.where, NPZ_HINT) from e
        return out

    def _inflate(self, key: str) -> np.ndarray:
        self.check_inflatable(key)
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.members[key]) as stream:
                return npy_format.read_array(stream, allow_pickle=False)  # chunked into the declared shape
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as e:
            raise DataError(f"cannot read {key}: {_first_line(e)}", self.where, NPZ_HINT) from e

    def _map(self, key: str) -> np.ndarray:
        header, header_bytes = self.header(key), self._headers[key][1]
        info = self.members[key]
        with self.path.open("rb") as f:
            f.seek(info.header_offset)
            fields = LOCAL_HEADER.unpack(f.read(LOCAL_HEADER.size))
        if fields[0] != LOCAL_SIGNATURE:
            raise DataError(f"{key}: damaged zip entry", self.where, NPZ_HINT)
        offset = info.header_offset + LOCAL_HEADER.size + fields[9] + fields[10] + header_bytes
        if offset + header.nbytes > self.path.stat().st_size:
            raise DataError(f"{key} extends past the end of the file", self.where, "the file is damaged: " + NPZ_HINT)
        if header.nbytes == 0:
            return np.zeros(header.shape, header.dtype)
        return np.memmap(self.path, header.dtype, "r", offset=offset, shape=header.shape,
                         order="F" if header.fortran_order else "C")


def open_npy(path: Path, key: str) -> RawArray:
    """An .npy file, memory-mapped (any size: rows are read from disk as they are indexed)."""
    check_input_file(path, f"{key} (.npy)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"not a readable .npy file: {e}", str(path), "save it with numpy.save(path, array)") from e
    if not isinstance(array, np.ndarray):
        raise DataError("not an .npy array", str(path), "save it with numpy.save(path, array)")
    return RawArray.of(array, key, str(path))


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
