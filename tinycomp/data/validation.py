"""Which training rows a plan validates on, and which it may fine-tune on: one small splitter.

Three kinds, as the data gives them (like scikit-learn's GroupShuffleSplit for groups):
- `given`: the data carries a validation set (x_val/y_val in an .npz, --val-data with .npy). Every
  training row may be fine-tuned on; validation is the given rows (by group when groups_val is given).
- `groups`: the data carries one group id per training row (groups_train: subject, speaker, session,
  device). Whole groups, chosen by the seed, are held out for validation (about `fraction` of them, at
  least two of three or more: a bound over groups needs two); fine-tuning never sees them. The same
  fraction and seed hold out the same groups, and a larger fraction holds out those and more.
- `rows`: neither. The last `fraction` of the training rows are held out, and `ROWS_NOTE` says so in
  one line, with how to give groups or a validation set.

`split_validation_rows` returns a `ValidationSplit`: the fit rows, the validation rows (indices into
the training rows, or None for a given set), the validation rows' groups (for a bound by group) and
a `ValidationSource` (kind, rows, groups) that sidecars and PLAN.json record. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinycomp.errors import DataError, InvalidValue

KINDS = ("rows", "groups", "given")
MIN_HELD_OUT_GROUPS = 2  # a bound over groups needs two (held out whenever three or more are given)
ROWS_NOTE = ("validation rows are the last {fraction:g} of {name}'s training rows ({rows:,}), so the check's bound "
             "counts rows: give groups_train (one subject/session id per training row; --groups with .npy) to hold "
             "out whole groups, or x_val/y_val (--val-data/--val-targets with .npy) to validate on your own rows")


@dataclass(frozen=True)
class ValidationSource:
    """What the validation rows are: `kind` (rows | groups | given), how many rows and groups
    (None: rows are the unit), the held-out group ids (kind groups) and the rows left to fine-tune on."""

    kind: str
    rows: int
    groups: int | None
    fit_rows: int
    held_out: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    def describe(self, name: str = "the data", fine_tunes: bool = True, label: str = "validation") -> str:
        """One line, '`label`: …': where the validation rows come from (`fine_tunes`: and what
        fine-tuning may see)."""
        if self.kind == "given":
            groups = f" in {self.groups} groups" if self.groups is not None else ""
            return (f"{label}: {name}'s own validation set ({self.rows:,} rows{groups})"
                    + (f"; all {self.fit_rows:,} training rows may be fine-tuned on" if fine_tunes else ""))
        if self.kind == "groups":
            shown = ", ".join(self.held_out[:8]) + (", …" if len(self.held_out) > 8 else "")
            return (f"{label}: {self.groups} held-out groups of {name} ({shown}; {self.rows:,} rows, seed "
                    f"{self.seed})" + (f"; fine-tuning sees only the other groups' {self.fit_rows:,} rows"
                                       if fine_tunes else ""))
        return f"{label}: the last {self.rows:,} of {name}'s training rows (no groups given)"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "groups": self.groups, "fit_rows": self.fit_rows,
                "held_out": list(self.held_out), "seed": self.seed}

    @classmethod
    def from_json(cls, payload: object, where: str) -> ValidationSource:
        if not isinstance(payload, dict):
            raise DataError("validation is not a JSON object", where, "re-create the file with this tinycomp")
        try:
            groups, seed = payload.get("groups"), payload.get("seed")
            return cls(str(payload["kind"]), int(payload["rows"]), None if groups is None else int(groups),
                       int(payload["fit_rows"]), tuple(str(g) for g in payload.get("held_out", [])),
                       None if seed is None else int(seed))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"validation is malformed: {e}", where, "re-create the file with this tinycomp") from e


@dataclass(frozen=True)
class ValidationSplit:
    """Row indices into the training rows: `fit` (fine-tuning), `val` (validation; None: the given
    validation set), `val_groups` (one group id per validation row; None: rows are the unit)."""

    fit: np.ndarray
    val: np.ndarray | None
    val_groups: np.ndarray | None
    source: ValidationSource


def split_validation_rows(train_rows: int, *, fraction: float, seed: int = 0, groups: np.ndarray | None = None,
                          given_rows: int | None = None, given_groups: np.ndarray | None = None) -> ValidationSplit:
    """The split of `train_rows` training rows: a given validation set (`given_rows` rows, with
    `given_groups` when known), else whole groups held out (`groups`, about `fraction` of them, chosen
    by `seed`), else the last `fraction` of the rows."""
    if not 0 < fraction < 1:
        raise InvalidValue(f"validation split must be in (0, 1), got {fraction}", "validation_split", "use e.g. 0.2")
    if given_rows is not None:
        return _given(train_rows, given_rows, given_groups)
    if groups is not None:
        return _by_groups(train_rows, np.asarray(groups).reshape(-1), fraction, seed)
    held = int(round(train_rows * fraction))
    if held < 1 or held >= train_rows:
        raise DataError(f"{train_rows} training rows cannot be split {1 - fraction:g}/{fraction:g}", "x_train",
                        "give more training rows or another validation split")
    return ValidationSplit(np.arange(train_rows - held), np.arange(train_rows - held, train_rows), None,
                           ValidationSource("rows", held, None, train_rows - held))


def _given(train_rows: int, given_rows: int, given_groups: np.ndarray | None) -> ValidationSplit:
    if given_rows < 1:
        raise DataError("the validation set has no rows", "x_val", "give at least one validation row")
    count = None
    if given_groups is not None:
        given_groups = np.asarray(given_groups).reshape(-1)
        if len(given_groups) != given_rows:
            raise DataError(f"groups_val has {len(given_groups)} ids for {given_rows} validation rows", "groups_val",
                            "give one group id per row of x_val")
        count = len(np.unique(given_groups))
    return ValidationSplit(np.arange(train_rows), None, given_groups,
                           ValidationSource("given", given_rows, count, train_rows))


def _by_groups(train_rows: int, groups: np.ndarray, fraction: float, seed: int) -> ValidationSplit:
    if len(groups) != train_rows:
        raise DataError(f"groups_train has {len(groups)} ids for {train_rows} training rows", "groups_train",
                        "give one group id per training row")
    ids = np.unique(groups)
    if len(ids) < 2:
        raise DataError(f"groups_train has {len(ids)} group; holding out whole groups needs at least 2", "groups_train",
                        "give more groups, or x_val/y_val as the validation set")
    fewest = MIN_HELD_OUT_GROUPS if len(ids) > MIN_HELD_OUT_GROUPS else 1
    count = min(max(fewest, int(round(fraction * len(ids)))), len(ids) - 1)
    held = np.sort(np.random.default_rng(seed).permutation(ids)[:count])
    is_val = np.isin(groups, held)
    val = np.flatnonzero(is_val)
    return ValidationSplit(np.flatnonzero(~is_val), val, groups[val],
                           ValidationSource("groups", len(val), count, int(train_rows - len(val)),
                                            tuple(str(g) for g in held.tolist()), seed))
