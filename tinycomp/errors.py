"""The one error family of tinycomp.

Every error a user can cause is a `TinycompError`: it carries what is wrong, where (a file, a
key path like `tensors[1].compression[0].lut.index_bitwidth`, a layer) and what to do. The CLI
renders it in one place as `Error: <what> (<where>) — <hint>`.
"""

from __future__ import annotations


class TinycompError(Exception):
    """A failure the user can understand and fix; rendered without a traceback."""

    exit_code = 1

    def __init__(self, what: str, where: str | None = None, hint: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.hint:
            text += f" — {self.hint}"
        return text


class UsageError(TinycompError):
    """Options that do not fit together; exit code 2 like click's own usage errors."""

    exit_code = 2


class InputFileError(TinycompError):
    """A file that is missing, unreadable, empty or of the wrong kind."""


class TooLarge(InputFileError):
    """An input whose declared size (zip member, array, model architecture) exceeds a limit."""


class OutputFileError(TinycompError):
    """An output path that cannot be written."""


class SpecError(TinycompError):
    """A clustering or compression spec that does not parse or validate."""


class ModelError(TinycompError):
    """A model that does not have what the step needs (layer, tensor, shape)."""


class UnsafeModelError(ModelError):
    """A model file whose loading would run code stored in it (Lambda layers, custom classes)."""


class DataError(TinycompError):
    """A dataset that is missing, malformed or does not fit the model."""


class CompressionFailed(TinycompError):
    """LUT compression or its verification failed."""


class InterpreterError(TinycompError):
    """The TFLM interpreter refused or crashed on a model."""


class BudgetExceeded(TinycompError):
    """No evaluated model fits the flash/RAM budget."""


class FieldError(TinycompError):
    """An error about one named value of a request (`field`, e.g. "validation_split").

    The library names the field, never a command-line option; the CLI maps the field to its option
    and renders it as the `where` with `located`.
    """

    def __init__(self, what: str, field: str | None, hint: str | None = None, where: str | None = None):
        super().__init__(what, where, hint)
        self.field = field

    def located(self, where: str | None) -> FieldError:
        """The same error with `where` set (e.g. to the option the field came from)."""
        located = type(self)(self.what, self.field, self.hint, where)
        located.__cause__ = self.__cause__
        return located


class InvalidValue(FieldError):
    """A value the library does not accept (out of range, unreadable); exit code 2 like a usage error."""

    exit_code = 2


class NothingFits(FieldError):
    """No choice meets the budget; `field` names the budget that cannot be met."""
