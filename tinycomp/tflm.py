"""Running models in the TFLM interpreter, always in worker processes.

The interpreter is C++; a model that passes validation can still make it crash. Running it in
child processes (spawned, so they never inherit TensorFlow state) turns a crash into a clean
`InterpreterError` instead of taking the CLI down. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import itertools
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinycomp.errors import InterpreterError
from tinycomp.native_output import captured_fds

DEFAULT_ARENA_BYTES = 16 * 1024 * 1024
WORKER_TIMEOUT_S = 600
MAX_NATIVE_CHARS = 400


# ---------------------------------------------------------------- inside a worker process

def _interpreter(model_bytes: bytes, alt_decompression_bytes: int = 0):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=DEFAULT_ARENA_BYTES,
                                          alt_decompression_memory_size=alt_decompression_bytes)


def quantize_input(x: np.ndarray, details: dict) -> np.ndarray:
    """Map float inputs to the model's input type using its scale and zero point."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    q = details["quantization_parameters"]
    scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, details: dict) -> np.ndarray:
    """Map quantized outputs back to float."""
    if np.dtype(details["dtype"]).kind == "f":
        return y.astype(np.float32)
    q = details["quantization_parameters"]
    return (y.astype(np.float32) - float(q["zero_points"][0])) * float(q["scales"][0])


def _arena_bytes(interpreter) -> int | None:
    """Read the arena total from the C++ `print_allocations` report."""
    with captured_fds() as captured:
        interpreter.print_allocations()
    match = re.search(r"Arena allocation total (\d+) bytes", captured())
    return int(match.group(1)) if match else None


def _batch_shaped(x: np.ndarray, details: dict) -> np.ndarray:
    return x.reshape(tuple(int(d) for d in details["shape"]))


def run_raw_outputs(model_bytes: bytes, inputs: np.ndarray) -> list[np.ndarray]:
    """Raw output 0 for each raw input row (already in the model's input type)."""
    interpreter = _interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    outputs = []
    for x in inputs:
        interpreter.set_input(_batch_shaped(x, details), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)))
    return outputs


@dataclass
class ChunkResult:
    """Predictions for one slice of the test set, with timing and arena use."""

    predictions: np.ndarray
    invoke_seconds: float
    arena_bytes: int | None
    decode_memory: tuple[int, int] | None = None  # see decode_memory
    outputs: np.ndarray | None = None  # dequantized output rows (flattened), for task metrics and agreement


def predict_chunk(model_bytes: bytes, x: np.ndarray, measure_arena: bool) -> ChunkResult:
    """Float outputs and argmax predictions for float inputs `x`, quantizing and dequantizing as the model needs."""
    interpreter = _interpreter(model_bytes)
    in_details = interpreter.get_input_details(0)
    out_details = interpreter.get_output_details(0)
    rows: list[np.ndarray] = []
    spent = 0.0
    for sample in x:
        interpreter.set_input(_batch_shaped(quantize_input(np.asarray(sample), in_details), in_details), 0)
        start = time.perf_counter()
        interpreter.invoke()
        spent += time.perf_counter() - start
        rows.append(dequantize_output(np.array(interpreter.get_output(0)), out_details).ravel())
    outputs = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    predictions = np.argmax(outputs, axis=-1).astype(np.int64) if len(outputs) else np.zeros(0, np.int64)
    if not measure_arena:
        return ChunkResult(predictions, spent, None, outputs=outputs)
    arena = _arena_bytes(interpreter)
    return ChunkResult(predictions, spent, arena, decode_memory(model_bytes, arena) if arena else None, outputs)


@dataclass
class RowOutputs:
    """What `run_rows` returns: output 0 dequantized (one flattened row per input row) and the raw values
    of the outputs after the model's own (one stacked array each), e.g. activations a cut model needs."""

    outputs: np.ndarray
    extra: tuple[np.ndarray, ...]


def run_rows(model_bytes: bytes, inputs: tuple[np.ndarray, ...], float_input: bool, first_extra: int = 1,
             extra: int = 0) -> RowOutputs:
    """Run every row: input `i` of row `r` is `inputs[i][r]` (float rows quantized as the model's input 0
    needs with `float_input`, else raw values of the inputs' types); outputs `first_extra`, ...,
    `first_extra + extra - 1` are returned raw as well."""

    interpreter = _interpreter(model_bytes)
    details = [interpreter.get_input_details(i) for i in range(len(inputs))]
    if float_input:
        inputs = (quantize_input(np.asarray(inputs[0]), details[0]),)
    shapes = [tuple(int(d) for d in d_["shape"]) for d_ in details]
    rows = len(inputs[0]) if inputs else 0
    main: list[np.ndarray] = []
    extras: list[list[np.ndarray]] = [[] for _ in range(extra)]
    for r in range(rows):
        for i, values in enumerate(inputs):
            interpreter.set_input(values[r].reshape(shapes[i]), i)
        interpreter.invoke()
        main.append(np.array(interpreter.get_output(0)).ravel())
        for j in range(extra):
            extras[j].append(np.array(interpreter.get_output(first_extra + j)))
    out_details = interpreter.get_output_details(0)
    outputs = dequantize_output(np.stack(main), out_details) if main else np.zeros((0, 0), np.float32)
    return RowOutputs(outputs, tuple(np.stack(e) for e in extras) if rows else tuple(np.zeros(0) for e in extras))


def arena_of(model_bytes: bytes, alt_decompression_bytes: int = 0) -> int | None:
    """The arena bytes TFLM allocates for the model (after one invoke on a zero input), given an
    alternate decompression memory of that many bytes outside the arena."""
    interpreter = _interpreter(model_bytes, alt_decompression_bytes)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(tuple(int(d) for d in details["shape"]), dtype=details["dtype"]), 0)
    interpreter.invoke()
    return _arena_bytes(interpreter)


def decode_memory(model_bytes: bytes, arena: int) -> tuple[int, int] | None:
    """(the smallest alternate decompression memory that takes every decoded LUT tensor out of
    the arena, the arena then), or None when no decoded tensor is in the arena.

    TFLM can decode into a region outside the arena (the interpreter's alternate decompression
    memory, e.g. another RAM bank). Its size is found by bisection: the arena shrinks until it
    holds no decoded tensor, never below that.
    """
    smallest = arena_of(model_bytes, arena)
    if smallest is None or smallest >= arena:
        return None
    low, high = 0, arena
    while low < high:
        middle = (low + high) // 2
        if arena_of(model_bytes, middle) == smallest:
            high = middle
        else:
            low = middle + 1
    return low, smallest


def input_details(model_bytes: bytes) -> dict:
    """Shape, dtype and quantization of input 0."""
    details = _interpreter(model_bytes).get_input_details(0)
    return {"shape": [int(d) for d in details["shape"]], "dtype": np.dtype(details["dtype"]).name,
            "quantization_parameters": {k: [float(v) for v in details["quantization_parameters"][k]]
                                        for k in ("scales", "zero_points")}}


class NativeRefusal(RuntimeError):
    """A TFLM failure with what the C++ side printed about it."""


def call_capturing_native_output(fn: Callable, *args):
    """Run `fn(*args)` with TFLM's C++ output captured (it would land above our `Error:` line);
    a failure is raised again with that output in its message, where it explains the failure."""
    failure = None
    with captured_fds() as captured:
        try:
            return fn(*args)
        except (RuntimeError, ValueError) as e:
            failure = e
    native = "; ".join(line.strip() for line in captured().splitlines() if line.strip())
    first = _first_line(failure)
    raise NativeRefusal(f"{first}: {native[:MAX_NATIVE_CHARS]}" if native else first) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---------------------------------------------------------------- in the parent process

def _pool(workers: int) -> futures.ProcessPoolExecutor:
    return futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def run_isolated(fn: Callable, *args, source: str = "model"):
    """Run `fn(*args)` in one child process; a crash or failure becomes an InterpreterError."""
    return run_parallel(fn, [args], workers=1, source=source)[0]


def arenas(files: list[bytes], workers: int, source: str, hint: str | None = None,
           pool: futures.ProcessPoolExecutor | None = None) -> list[int]:
    """The TFLM arena bytes of each model file (`arena_of`), measured in up to `workers` child processes (in
    `pool` when given); an InterpreterError naming `source` when TFLM reports no arena size."""
    measured = run_parallel(arena_of, [(f,) for f in files], workers=max(1, workers), source=source, pool=pool)
    if any(a is None for a in measured):
        raise InterpreterError("TFLM did not report its arena size", source, hint)
    return [int(a) for a in measured]


def run_parallel(fn: Callable, arg_list: Iterable[tuple], workers: int, source: str = "model",
                 on_done: Callable[[int], None] | None = None,
                 on_result: Callable[[int, Any], None] | None = None,
                 pool: futures.ProcessPoolExecutor | None = None) -> list:
    """Run `fn` over `arg_list` in up to `workers` child processes, results in order (`on_done` gets
    each finished item's index, `on_result` its index and result, as they finish); in `pool` (from
    `worker_pool`) when given, else in a pool of its own.

    The arguments are taken from `arg_list` as workers free up (at most two per worker in
    flight), so a lazy iterable of data chunks is never all in memory at once.
    """
    tasks = iter(enumerate(arg_list))
    results: dict[int, Any] = {}
    with _worker_pool(workers, source, pool) as pool:
        pending: dict[futures.Future, int] = {}

        def submit_next() -> None:
            for i, args in itertools.islice(tasks, 1):
                pending[pool.submit(call_capturing_native_output, fn, *args)] = i

        for _ in range(2 * max(1, workers)):
            submit_next()
        while pending:
            for i, result in _finished(pending, source):
                results[i] = result
                if on_done:
                    on_done(i)
                if on_result:
                    on_result(i, result)
                submit_next()
    return [results[i] for i in range(len(results))]


def run_scheduled(fn: Callable, ready: Callable[[], list[tuple[Any, tuple]]], workers: int,
                  on_result: Callable[[Any, Any], None], source: str = "model",
                  pool: futures.ProcessPoolExecutor | None = None) -> None:
    """Run `fn` on tasks as `ready()` releases them, in one pool of up to `workers` child processes.

    `ready()` returns the (key, args) tasks that can start now; it is called at the start and after
    every result (`on_result(key, result)`), so what runs next can depend on what finished. The
    run ends when nothing is in flight and `ready()` releases nothing more. In `pool` when given.
    """
    waiting: list[tuple[Any, tuple]] = []
    with _worker_pool(workers, source, pool) as pool:
        pending: dict[futures.Future, Any] = {}

        def fill() -> None:
            waiting.extend(ready())
            while waiting and len(pending) < 2 * max(1, workers):
                key, args = waiting.pop(0)
                pending[pool.submit(call_capturing_native_output, fn, *args)] = key

        fill()
        while pending:
            for key, result in _finished(pending, source):
                on_result(key, result)
            fill()


def submit(pool: futures.ProcessPoolExecutor, fn: Callable, *args: Any) -> futures.Future:
    """Start `fn(*args)` in `pool` (from `worker_pool`) and return at once; `gather` waits for it."""
    return pool.submit(call_capturing_native_output, fn, *args)


def gather(started: list[futures.Future], source: str = "model") -> list:
    """The results of `submit`ted tasks, in order; failures and timeouts as in `run_parallel`."""
    pending = dict(zip(started, range(len(started))))
    results: dict[int, Any] = {}
    while pending:
        results.update((i, result) for i, result in _finished(pending, source))
    return [results[i] for i in range(len(started))]


@contextlib.contextmanager
def worker_pool(workers: int, source: str = "model") -> Iterator[futures.ProcessPoolExecutor]:
    """A pool of `workers` child processes for several `run_parallel`/`run_scheduled` calls (each new
    pool spawns processes that import numpy and the interpreter again), killed when anything fails."""
    with _worker_pool(workers, source) as pool:
        yield pool


@contextlib.contextmanager
def _worker_pool(workers: int, source: str,
                 given: futures.ProcessPoolExecutor | None = None) -> Iterator[futures.ProcessPoolExecutor]:
    """A pool of `workers` child processes (or `given`), killed when anything fails; a timeout is an
    InterpreterError."""
    with contextlib.nullcontext(given) if given is not None else _pool(max(1, workers)) as pool:
        try:
            yield pool
        except futures.TimeoutError as e:
            _kill(pool)
            raise InterpreterError(f"the TFLM interpreter did not finish in {WORKER_TIMEOUT_S} s", source) from e
        except BaseException:
            _kill(pool)
            raise


def _finished(pending: dict[futures.Future, Any], source: str) -> list[tuple[Any, Any]]:
    """(key, result) of the in-flight tasks that finish first, removed from `pending`; TimeoutError when
    none finishes within WORKER_TIMEOUT_S."""
    done, _ = futures.wait(pending, timeout=WORKER_TIMEOUT_S, return_when=futures.FIRST_COMPLETED)
    if not done:
        raise futures.TimeoutError()
    return [(pending.pop(future), _result(future, source)) for future in done]


def _result(future: futures.Future, source: str):
    try:
        return future.result()
    except futures.process.BrokenProcessPool as e:
        raise InterpreterError("the TFLM interpreter crashed on this model", source,
                               "the .tflite may be corrupt or use operators TFLM lacks") from e
    except (RuntimeError, ValueError) as e:
        raise InterpreterError(f"the TFLM interpreter refused the model: {_first_line(e)}", source,
                               "check that the model was made by `tinycomp quantize`/`compress`") from e


def _kill(pool: futures.ProcessPoolExecutor) -> None:
    """Stop the workers now and wait for the pool's manager thread to notice.

    Not waiting leaves that thread running into interpreter exit, where concurrent.futures'
    exit hook then prints a traceback about a closed pipe (seen in the fuzz test).
    """
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)
