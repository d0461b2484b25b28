"""Fuzzing the .tflite readers: mutated flatbuffers end in success or one clean `Error:` line.

Seeded mutations (bit flips, truncations, splices) of the pipeline's int8 and compressed models
are fed to `find-tensors`, `compress` and `eval --limit 5`. Each case runs the real command line
in its own process with a timeout, so a crash (a signal), a hang or a Python traceback fails
the test instead of taking pytest down. Mutations are biased towards the flatbuffer's tables
(the first and last few KB), where flips change offsets, counts and types rather than weights.
"field" mutations edit one field through tflite-micro's model_editor and rebuild (a tensor's shape
or type, an operator's input, output or opcode, a quantization), so the flatbuffer stays
well-formed and the nonsense reaches tinycomp's checks and the TFLM interpreter itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

CASE_TIMEOUT_S = 60
KINDS = ("bitflip", "truncate", "splice", "field")
COMMANDS = ("find-tensors", "compress", "eval")
SEEDS_PER_KIND = 8  # 3 commands × 4 kinds × 8 seeds = 96 cases


@dataclass(frozen=True)
class FuzzCase:
    command: str
    kind: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.command}-{self.kind}-{self.seed}"


CASES = [FuzzCase(command, kind, seed) for command in COMMANDS for kind in KINDS for seed in range(SEEDS_PER_KIND)]


def hot_offset(rng: np.random.Generator, size: int, zone: int = 4096) -> int:
    """An offset in the first or last `zone` bytes (tables, vtables, offsets) or anywhere (weights)."""
    where = rng.integers(3)
    if where == 0:
        return int(rng.integers(0, min(zone, size)))
    if where == 1:
        return int(rng.integers(max(0, size - zone), size))
    return int(rng.integers(0, size))


def mutate(data: bytes, other: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One seeded mutation of `data`; `other` is a second model to splice from."""
    buf = bytearray(data)
    if kind == "bitflip":
        for _ in range(int(rng.choice([1, 2, 8, 32]))):
            pos = hot_offset(rng, len(buf))
            buf[pos] ^= 1 << int(rng.integers(8))
        return bytes(buf)
    if kind == "truncate":
        keep = hot_offset(rng, len(buf))
        return bytes(buf[:keep])
    if kind == "splice":
        source = other if rng.integers(2) else data
        length = int(rng.integers(4, 512))
        start = int(rng.integers(0, max(1, len(source) - length)))
        chunk = source[start:start + length]
        pos = hot_offset(rng, len(buf))
        mode = rng.integers(3)
        if mode == 0:  # overwrite
            buf[pos:pos + len(chunk)] = chunk
            return bytes(buf[:len(data)])
        if mode == 1:  # insert
            return bytes(buf[:pos] + chunk + buf[pos:])
        return bytes(buf[:pos] + buf[pos + length:])  # delete
    if kind == "field":
        for _ in range(20):  # a few edits cannot be serialized; draw another
            try:
                return field_mutation(data, rng)
            except Exception:  # noqa: BLE001 - model_editor.build rejecting the edit
                continue
    raise ValueError(kind)


def field_mutation(data: bytes, rng: np.random.Generator) -> bytes:
    from tinycomp.tflite.model import model_editor

    editor = model_editor()
    model = editor.read(data)
    sg = model.subgraphs[0]
    tensor = sg.tensors[int(rng.integers(len(sg.tensors)))]
    op = sg.operators[int(rng.integers(len(sg.operators)))]
    what = int(rng.integers(6))
    if what == 0:
        tensor.shape = tuple(int(d) for d in rng.integers(0, 40, size=len(tensor.shape)))
    elif what == 1:
        tensor.dtype = int(rng.integers(0, 18))
    elif what == 2 and op.inputs:
        op.inputs[int(rng.integers(len(op.inputs)))] = sg.tensors[int(rng.integers(len(sg.tensors)))]
    elif what == 3:
        op.opcode_index = int(rng.integers(len(model.operator_codes)))
    elif what == 4:
        count = int(rng.integers(1, 5))
        tensor.quantization = editor.Quantization(scales=[0.1] * count, zero_points=[0] * count,
                                                  axis=int(rng.integers(0, 4)))
    else:
        op.outputs = [sg.tensors[int(rng.integers(len(sg.tensors)))]]
    mutated = bytes(model.build())
    if mutated == data:
        raise ValueError("no change")
    return mutated


def run_tinycomp(args: list, timeout: float = CASE_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TINYCOMP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tinycomp", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mutated_tflite_fails_cleanly(case: FuzzCase, pipeline, tmp_path):
    rng = np.random.default_rng([COMMANDS.index(case.command), KINDS.index(case.kind), case.seed])
    int8 = pipeline["clustered_int8_tflite"].read_bytes()
    compressed = pipeline["compressed_tflite"].read_bytes()
    # compress needs an uncompressed model its spec fits; the others get either model
    original, other = (int8, compressed) if case.command == "compress" or rng.integers(2) else (compressed, int8)
    model = tmp_path / "mutated.tflite"
    model.write_bytes(mutate(original, other, case.kind, rng))
    out = tmp_path / ("out.yaml" if case.command == "find-tensors" else "out.tflite" if case.command == "compress"
                      else "eval.json")
    if case.command == "find-tensors":
        args = ["find-tensors", model, "--all", "-o", out]
    elif case.command == "compress":
        args = ["compress", model, "--spec", pipeline["compression_yaml"], "-o", out, "--verify-samples", "2"]
    else:
        args = ["eval", model, "--limit", "5", "--jobs", "1", "--data", pipeline["data"], "--json", out]
    try:
        result = run_tinycomp(args)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{case.id}: no answer within {CASE_TIMEOUT_S} s (hang)\n{e.stderr}")
    text = result.stdout + result.stderr
    assert result.returncode >= 0, f"{case.id}: killed by signal {-result.returncode}\n{text}"
    assert "Traceback" not in text, f"{case.id}: Python traceback\n{text}"
    assert "internal error" not in text, f"{case.id}: internal error\n{text}"
    if result.returncode == 0:
        assert out.is_file(), f"{case.id}: exit 0 but no {out.name}"
    else:
        assert result.returncode in (1, 2), f"{case.id}: exit {result.returncode}\n{text}"
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, f"{case.id}: expected one Error: line\n{text}"
        assert not out.exists(), f"{case.id}: failed but wrote {out.name}"
    assert not list(tmp_path.glob(".*.tmp*")), f"{case.id}: temporary file left behind"


def test_mutations_are_deterministic_and_varied(pipeline):
    data = pipeline["clustered_int8_tflite"].read_bytes()
    other = pipeline["compressed_tflite"].read_bytes()
    for kind in KINDS:
        a = [mutate(data, other, kind, np.random.default_rng([0, KINDS.index(kind), s])) for s in range(SEEDS_PER_KIND)]
        b = [mutate(data, other, kind, np.random.default_rng([0, KINDS.index(kind), s])) for s in range(SEEDS_PER_KIND)]
        assert a == b
        assert all(m != data for m in a)
        assert len(set(a)) >= len(a) - 1  # two field edits may coincide
