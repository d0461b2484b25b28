"""Capture what C++ code (TensorFlow, the TFLite converter, TFLM) writes straight to fds 1 and 2.

Python-level redirection cannot see those writes, so the file descriptors are swapped for a
temporary file while the block runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def captured_fds(fds: tuple[int, ...] = (1, 2)) -> Iterator[Callable[[], str]]:
    """Redirect `fds` into a temporary file; yields a function returning what was captured."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as capture:
        saved = {fd: os.dup(fd) for fd in fds}
        text: list[str] = []
        try:
            for fd in fds:
                os.dup2(capture.fileno(), fd)
            yield lambda: "".join(text)
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            capture.seek(0)
            text.append(capture.read().decode("utf-8", "replace"))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and friends once, hiding their C++ start-up log lines (CUDA, oneDNN)."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_fds((2,)):
        import tensorflow  # noqa: F401
        import tensorflow_model_optimization  # noqa: F401
        import tf_keras  # noqa: F401
