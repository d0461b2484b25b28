"""Bounded memory (issue 19): small bombs of each kind are refused from their declared sizes, with
the limits lowered through TINYCOMP_MAX_* so the files stay small; data is read only as needed."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import h5py  # imported here: its first import starts a process (the unit tier refuses that in a test)
import numpy as np
import pytest
from numpy.lib import format as npy_format

from helpers import damage_member, npy_bytes, run_cli, write_zip
from tinycomp import limits
from tinycomp.data import DataSpec, open_dataset
from tinycomp.errors import DataError, TooLarge
from tinycomp.model_config import read_saved_config

MIB = 1024**2


def data_npz(path: Path, x_train: np.ndarray, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """An .npz with this x_train and 8 test rows shaped like it (labels 0..3 in both splits)."""
    x_test = np.arange(8 * int(np.prod(x_train.shape[1:]))).reshape((8, *x_train.shape[1:])).astype(x_train.dtype)
    return write_zip(path, {"x_train.npy": npy_bytes(x_train), "y_train.npy": npy_bytes(np.arange(len(x_train)) % 4),
                            "x_test.npy": npy_bytes(x_test), "y_test.npy": npy_bytes(np.arange(8) % 4)}, compression)


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def refused_quickly(args: list, expected: str) -> None:
    start = time.perf_counter()
    result = run_cli(args)
    assert result.exit_code == 1 and last_line(result) == expected, result.output
    assert time.perf_counter() - start < 10
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- .keras

def test_keras_config_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.CONFIG_SETTING, "4096")
    bomb = write_zip(tmp_path / "bomb.keras", {"config.json": b" " * 100_000 + b"{}", "metadata.json": b"{}"})
    refused_quickly(["convert", bomb, "-o", tmp_path / "m.tflite"],
                    f"Error: member config.json (uncompressed) declares 100,002 bytes, more than the limit of 4,096 "
                    f"(TINYCOMP_MAX_CONFIG_BYTES) ({bomb}) — no real model needs this much: the file is damaged or "
                    "hostile; or raise TINYCOMP_MAX_CONFIG_BYTES if you trust the file and have the memory")


def test_keras_member_with_a_bomb_ratio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.RATIO_SETTING, "50")
    bomb = write_zip(tmp_path / "bomb.keras", {"config.json": b"{}", "model.weights.h5": bytes(2 * MIB)})
    info = zipfile.ZipFile(bomb).getinfo("model.weights.h5")
    ratio = info.file_size / info.compress_size
    assert ratio > 50
    refused_quickly(["convert", bomb, "-o", tmp_path / "m.tflite"],
                    f"Error: member model.weights.h5 declares 2,097,152 bytes compressed into {info.compress_size:,} "
                    f"(ratio {ratio:,.0f}:1, more than the limit of 50:1, TINYCOMP_MAX_COMPRESSION_RATIO): a compression "
                    f"bomb ({bomb}) — no real model needs this much: the file is damaged or hostile; or raise "
                    "TINYCOMP_MAX_COMPRESSION_RATIO if you trust the file")


def test_keras_archive_total_is_capped(tmp_path, monkeypatch):
    """Many members each under the limit (an overlapping-entries bomb declares the same) add up."""
    monkeypatch.setenv(limits.ARRAY_SETTING, str(MIB))
    members = {"config.json": b"{}", **{f"assets/{i}": np.random.default_rng(i).bytes(300_000) for i in range(4)}}
    bomb = write_zip(tmp_path / "many.keras", members)
    with pytest.raises(TooLarge, match=r"the \.keras archive \(all members\) declares 1,200,002 bytes, more than the "
                                       r"limit of 1,048,576 \(TINYCOMP_MAX_ARRAY_BYTES\)"):
        limits.check_keras_archive(bomb)


# ---------------------------------------------------------------- .h5 and SavedModel architecture

def test_h5_model_config_attribute_is_capped(tmp_path, monkeypatch):
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = (b'{"class_name": "Sequential", "config": {"layers": []}}' + b" " * 20_000)
    monkeypatch.setenv(limits.CONFIG_SETTING, "8192")
    with pytest.raises(TooLarge) as caught:
        read_saved_config(path, "h5")
    assert str(caught.value) == (
        f"attribute model_config declares 20,054 bytes, more than the limit of 8,192 (TINYCOMP_MAX_CONFIG_BYTES) "
        f"({path}) — no real model needs this much: the file is damaged or hostile; or raise "
        "TINYCOMP_MAX_CONFIG_BYTES if you trust the file and have the memory")
    monkeypatch.setenv(limits.CONFIG_SETTING, str(MIB))
    assert read_saved_config(path, "h5").config["class_name"] == "Sequential"  # within the limit it reads


def test_saved_model_metadata_is_capped(tmp_path, monkeypatch):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\0" * 16)
    (saved / "keras_metadata.pb").write_bytes(b"\0" * 10_000)
    monkeypatch.setenv(limits.CONFIG_SETTING, "1000")
    with pytest.raises(TooLarge, match=r"keras_metadata\.pb declares 10,000 bytes, more than the limit of 1,000"):
        read_saved_config(saved, "savedmodel")


# ---------------------------------------------------------------- .npz and .npy

def test_npz_training_rows_over_the_limit_are_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.ARRAY_SETTING, str(MIB))
    bomb = data_npz(tmp_path / "bomb.npz", np.zeros((20_000, 8, 8), np.uint8))  # 1.28 MB of zeros, 2 KB on disk
    declared = zipfile.ZipFile(bomb).getinfo("x_train.npy").file_size
    refused_quickly(["train", "-o", tmp_path / "m.h5", "--data", bomb, "--epochs", "1"],
                    f"Error: member x_train.npy (uncompressed) declares {declared:,} bytes, more than the limit of "
                    f"1,048,576 (TINYCOMP_MAX_ARRAY_BYTES) ({bomb}) — save x_train as X.npy (labels or targets as "
                    "Y.npy, given with --targets), which is memory-mapped, or the .npz uncompressed with numpy.savez, "
                    "whose members are memory-mapped too; or raise TINYCOMP_MAX_ARRAY_BYTES if you trust the file and "
                    "have the memory")


def test_npz_member_with_a_bomb_ratio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.RATIO_SETTING, "100")
    bomb = data_npz(tmp_path / "bomb.npz", np.zeros((40_000, 8, 8), np.uint8))
    result = run_cli(["train", "-o", tmp_path / "m.h5", "--data", bomb, "--epochs", "1"])
    assert result.exit_code == 1
    assert last_line(result).startswith("Error: member x_train.npy declares 2,560,128 bytes compressed into ")
    assert "more than the limit of 100:1, TINYCOMP_MAX_COMPRESSION_RATIO): a compression bomb" in last_line(result)


def test_npy_header_beyond_its_member_is_refused(tmp_path):
    """A header that declares more rows than the member holds fails before anything is allocated."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)})
    lying = buffer.getvalue() + bytes(100)
    path = write_zip(tmp_path / "lying.npz", {"x_train.npy": lying, "x_test.npy": lying})
    with pytest.raises(DataError, match=r"x_train's header declares 784,000,000,000 bytes \(\(1000000000, 28, 28\) "
                                        r"uint8\) but the member holds 100"):
        open_dataset(DataSpec("npz", str(path)))
    npy = tmp_path / "x.npy"
    npy.write_bytes(lying)
    result = run_cli(["train", "-o", tmp_path / "m.h5", "--data", npy, "--epochs", "1"])
    assert result.exit_code == 1 and last_line(result).startswith("Error: not a readable .npy file:")


def test_nested_zip_member_is_never_opened(tmp_path, monkeypatch):
    """An .npz whose member is itself a zip bomb: only the outer member's first bytes are read."""
    monkeypatch.setenv(limits.ARRAY_SETTING, str(MIB))
    inner = write_zip(tmp_path / "inner.zip", {"x.npy": npy_bytes(np.zeros((4_000, 28, 28), np.uint8))})
    path = write_zip(tmp_path / "nested.npz", {"x_train.npy": inner.read_bytes(), "x_test.npy": inner.read_bytes()})
    refused_quickly(["train", "-o", tmp_path / "m.h5", "--data", path],
                    f"Error: x_train is not a readable .npy array: the magic string is not correct; expected "
                    f"b'\\x93NUMPY', got b'PK\\x03\\x04\\x14\\x00' ({path}) — save it with numpy.savez(path, "
                    "x_train=..., y_train=..., x_test=..., y_test=...)")


def test_test_rows_are_read_without_touching_x_train(tmp_path):
    """x_train's data is damaged past its header: the test split reads fine, the train split fails."""
    x_train = np.random.default_rng(0).integers(0, 255, (5_000, 8, 8), dtype=np.uint8)
    path = data_npz(tmp_path / "d.npz", x_train)
    damage_member(path, "x_train.npy")
    data = open_dataset(DataSpec("npz", str(path)), splits=("test",))
    assert data.input_shape == (8, 8, 1) and len(data.x_train) == 5_000  # from the header
    expected = np.arange(8 * 64).reshape(8, 8, 8, 1).astype(np.uint8) / np.float32(255)
    np.testing.assert_array_equal(data.x_test[:], expected.astype(np.float32))
    assert data.num_classes == 4 and list(data.y_test) == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(DataError, match="cannot read x_train"):  # the damage is real
        np.asarray(open_dataset(DataSpec("npz", str(path))).x_train)


def test_uncompressed_npz_members_are_memory_mapped_and_streamed_when_large(tmp_path, monkeypatch):
    x_train = np.random.default_rng(0).integers(0, 255, (4_000, 8, 8), dtype=np.uint8)
    path = data_npz(tmp_path / "stored.npz", x_train, zipfile.ZIP_STORED)
    small = open_dataset(DataSpec("npz", str(path)))
    assert isinstance(small.x_train.raw.values(), np.memmap) and not small.streamed  # fits: read whole, as before
    np.testing.assert_array_equal(np.asarray(small.x_train)[..., 0], x_train / np.float32(255))
    monkeypatch.setenv(limits.ARRAY_SETTING, str(200_000))  # x_train is 1,024,000 bytes as float32
    large = open_dataset(DataSpec("npz", str(path)))
    assert large.streamed
    np.testing.assert_array_equal(large.x_train[100:110][..., 0], x_train[100:110] / np.float32(255))
    with pytest.raises(TooLarge, match=r"x_train: 4,000 rows as float32 declares 1,024,000 bytes"):
        np.asarray(large.x_train)


def test_preprocessing_is_chunked_and_exact(tmp_path):
    """uint8 / 255 chunk by chunk gives exactly the tutorial's x / 255 of the whole array."""
    from tinycomp.data import dataset

    x = np.random.default_rng(1).integers(0, 256, (dataset.CONVERT_CHUNK_ROWS * 2 + 7, 5), dtype=np.uint8)
    np.savez_compressed(tmp_path / "d.npz", x_train=x, x_test=x[:3])
    data = open_dataset(DataSpec("npz", str(tmp_path / "d.npz")))
    assert np.asarray(data.x_train).tobytes() == (x.astype(np.float32) / np.float32(255)).tobytes()


def test_limits_come_from_the_environment(monkeypatch):
    assert limits.current() == limits.Limits(2 * 1024**3, 32 * MIB, 200.0)
    monkeypatch.setenv(limits.ARRAY_SETTING, "1e6")
    assert limits.current().array_bytes == 1_000_000
    monkeypatch.setenv(limits.RATIO_SETTING, "lots")
    with pytest.raises(TooLarge, match="TINYCOMP_MAX_COMPRESSION_RATIO='lots' is not a number"):
        limits.current()


def test_data_spec_round_trips_through_json():
    spec = DataSpec("npy", "x.npy", "y.npy", 0.5, -1.0)
    assert DataSpec.from_json(spec.to_json(), "eval.json") == spec
    assert DataSpec.from_json(DataSpec("images", "imgs", image_size=(96, 96)).to_json(), "e").image_size == (96, 96)
    with pytest.raises(DataError, match=r"dataset.spec has unknown keys colour \(eval.json\)"):
        DataSpec.from_json({**spec.to_json(), "colour": 1}, "eval.json")
    with pytest.raises(DataError, match="dataset.spec is malformed: data source 'npz' needs a path"):
        DataSpec.from_json({"source": "npz"}, "eval.json")


def test_calibration_reads_only_its_rows_of_a_compressed_member(tmp_path, monkeypatch):
    """quantize's calibration rows are streamed out of a compressed x_train: it is never inflated whole."""
    from tinycomp.data import calibration_samples
    from tinycomp.data.arrays import NpzArchive

    x_train = np.random.default_rng(2).integers(0, 256, (30_000, 6, 6), dtype=np.uint8)
    path = data_npz(tmp_path / "d.npz", x_train)
    data = open_dataset(DataSpec("npz", str(path)))
    monkeypatch.setattr(NpzArchive, "_inflate", lambda *a: pytest.fail("x_train was inflated whole"))
    rows = calibration_samples(data, 100, seed=3)
    chosen = np.random.default_rng(3).choice(len(x_train), size=100, replace=False)
    assert rows.tobytes() == (x_train[chosen].astype(np.float32) / np.float32(255))[..., np.newaxis].tobytes()


def test_float_inputs_are_checked_for_nan_as_their_rows_are_read(tmp_path, monkeypatch):
    """A compressed float x_train is not inflated whole for the NaN check: quantize's calibration rows
    are read and checked, and a NaN is refused in the rows that hold it."""
    from tinycomp.data import calibration_samples
    from tinycomp.data.arrays import NpzArchive

    x_train = np.random.default_rng(4).normal(size=(30_000, 6)).astype(np.float32)
    x_train[7, 2] = np.nan
    path = data_npz(tmp_path / "d.npz", x_train)
    inflate = NpzArchive._inflate

    def refuse_x_train(archive: NpzArchive, key: str) -> np.ndarray:
        assert key != "x_train", "x_train was inflated whole"
        return inflate(archive, key)

    monkeypatch.setattr(NpzArchive, "_inflate", refuse_x_train)
    data = open_dataset(DataSpec("npz", str(path)))
    chosen = np.random.default_rng(3).choice(len(x_train), size=100, replace=False)
    assert 7 not in chosen
    assert calibration_samples(data, 100, seed=3).tobytes() == x_train[chosen].tobytes()
    with pytest.raises(DataError, match=r"x_train contains NaN or infinite values \(.*d\.npz\)"):
        data.x_train.take(np.array([5, 7]))
