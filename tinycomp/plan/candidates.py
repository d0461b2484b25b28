"""The units of a sensitivity measurement and what each one measured (pure: no TensorFlow).

A *candidate* is the unclustered control or one layer at one cluster count. Candidates are listed in
one canonical order (the control, then each layer's counts from many clusters to few), so shards,
worker processes and resumed runs agree on which is which. A `CandidateResult` holds the raw
accuracies one candidate measured (zero-shot and/or fine-tuned); `assemble_drops` turns them into
the drops the table counts, and does so the same way whatever order they were measured in: that is
what makes a sharded, parallel or resumed table equal to a sequential one.

`PartialTable` is the record of some candidates' results (a shard's part, or the progress file of
an interrupted run), with everything needed to check that parts belong together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.metrics import SNR_CAP_DB
from tinycomp.plan.units import score_text

CONTROL = "control"
PARTIAL_SCHEMA_VERSION = 1
PARTIAL_STEP = "plan-partial"
NOT_A_PART = "not a partial sensitivity table written by `tinycomp plan`"
PART_HINT = "give the .json files `plan --shard I/N -o PART.json` wrote (or delete a corrupt OUTPUT.partial.json)"


@dataclass(frozen=True)
class Candidate:
    """The control (layer None) or one layer clustered to `clusters`."""

    layer: str | None = None
    clusters: int | None = None

    @property
    def key(self) -> str:
        return CONTROL if self.layer is None else f"{self.layer}/{self.clusters}"


@dataclass(frozen=True)
class CandidateResult:
    """What one candidate measured: validation accuracies zero-shot and/or fine-tuned (None: not measured)."""

    key: str
    zero_shot: float | None = None
    fine_tuned: float | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict, task: str = "classify") -> CandidateResult:
        """The result; ValueError for a score outside the task's range (accuracy 0–1, SNR ±SNR_CAP_DB dB)."""
        low, high = (-SNR_CAP_DB, SNR_CAP_DB) if task == "regress" else (0.0, 1.0)
        result = cls(**payload)
        for value in (result.zero_shot, result.fine_tuned):
            if value is not None and not low <= float(value) <= high:
                raise ValueError(f"score {value!r}")
        return result


def candidates_of(usable: dict[str, list[int]]) -> list[Candidate]:
    """Every candidate in the canonical order: the control, then each layer's counts, many clusters to few."""
    return [Candidate()] + [Candidate(name, c) for name, counts in usable.items() for c in sorted(counts, reverse=True)]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): every count-th candidate of the canonical order."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise InvalidValue(f"shard must be I/N with 1 ≤ I ≤ N, got {self.index}/{self.count}", "shard", "e.g. 1/4")

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise InvalidValue(f"cannot read shard {text!r}", "shard", "write I/N, e.g. 1/4") from None
        return cls(index, count)

    def select(self, candidates: list[Candidate]) -> list[Candidate]:
        return [c for i, c in enumerate(candidates) if i % self.count == self.index - 1]

    def describe(self) -> str:
        return f"{self.index}/{self.count}"


def binomial_noise_pp(accuracy: float, samples: int) -> float:
    """The standard error of one accuracy measured on `samples` rows, in percentage points."""
    return 100.0 * (accuracy * (1 - accuracy) / max(samples, 1)) ** 0.5


def needs_fine_tune(zero_shot: float, *, reference: float, noise_pp: float, scale: float = 100.0) -> bool:
    """The fast estimate fine-tunes a candidate only when its zero-shot drop is beyond the noise
    (`scale`: drop units per unit of score, see `units`)."""
    return scale * (reference - zero_shot) > noise_pp


@dataclass(frozen=True)
class Drop:
    """One candidate's drop (in the task's drop unit) and score; fine_tuned False for a zero-shot estimate."""

    drop_pp: float
    accuracy: float
    fine_tuned: bool

    def describe(self, task: str = "classify") -> str:
        return score_text(task, self.accuracy) + ("" if self.fine_tuned else " (zero-shot)")


def fine_tune_limit_pp(max_drop_pp: float | None, *, reference: float, control: float, noise_pp: float,
                      scale: float = 100.0) -> float | None:
    """The drop above which a fine-tuned candidate cannot be part of any plan within the budget (the
    budget plus the most fine-tuning can credit plus one noise; other layers' drops are ≥ 0)."""
    if max_drop_pp is None:
        return None
    return max_drop_pp + max(0.0, scale * (control - reference)) + noise_pp


def assemble_drops(counts: list[int], results: dict[int, CandidateResult], *, estimate: str, reference: float,
                   control: float, limit_pp: float | None, scale: float = 100.0) -> dict[int, Drop]:
    """One layer's drops from its candidates' results.

    fine-tune: every count's fine-tuned drop vs the control. fast: going from many clusters to few, a
    count that was fine-tuned counts its fine-tuned drop vs the control, until one exceeds `limit_pp`;
    every other count (within the noise zero-shot, or below a count too harmful to choose) counts its
    zero-shot drop vs the given model, which overstates the fine-tuned one: the error is on the safe side.
    """
    drops: dict[int, Drop] = {}
    hopeless = False
    for c in sorted(counts, reverse=True):
        tuned, zero = results[c].fine_tuned, results[c].zero_shot
        if tuned is not None and (estimate == "fine-tune" or not hopeless):
            drops[c] = Drop(scale * (control - tuned), tuned, True)
            hopeless = limit_pp is not None and drops[c].drop_pp > limit_pp
        elif zero is not None and estimate == "fast":
            drops[c] = Drop(scale * (reference - zero), zero, False)
        else:
            raise ValueError(f"{results[c].key} lacks the measurement the {estimate} estimate needs")
    return {c: drops[c] for c in counts}


def still_needed(candidate: Candidate, result: CandidateResult | None, *, estimate: str, reference: float,
                 noise_pp: float, hopeless: bool = False, scale: float = 100.0) -> tuple[bool, bool]:
    """(measure zero-shot, fine-tune) still to do for `candidate`, given what `result` already holds.

    `hopeless` (known only when measuring a layer's counts in order) skips a fine-tune whose result
    `assemble_drops` would discard anyway."""
    zero = result.zero_shot if result else None
    have_tuned = result is not None and result.fine_tuned is not None
    if candidate.layer is None or estimate == "fine-tune":
        return False, not have_tuned
    if zero is None:
        return True, not hopeless  # decided after the zero-shot measurement
    wanted = not hopeless and needs_fine_tune(zero, reference=reference, noise_pp=noise_pp, scale=scale)
    return False, wanted and not have_tuned


@dataclass(frozen=True)
class PartialTable:
    """Some candidates' results and what they were measured on (one shard, or an interrupted run)."""

    source_sha256: str
    dataset: dict
    measurement: dict  # the Measurement's fields, as JSON
    seed: int
    shard: Shard
    candidates: list[str]  # keys of the candidates this part is to measure, in the canonical order
    results: list[CandidateResult] = field(default_factory=list)
    schema_version: int = PARTIAL_SCHEMA_VERSION
    task: str = "classify"  # what the scores are (see `units`); parts from before it are classify

    @property
    def complete(self) -> bool:
        return {r.key for r in self.results} >= set(self.candidates)

    def same_origin(self, other: PartialTable) -> str | None:
        """What differs between the two parts' model, data, options and seed (None: nothing)."""
        for name, mine, theirs in (("model", self.source_sha256, other.source_sha256),
                                   ("data", self.dataset, other.dataset),
                                   ("task", self.task, other.task),
                                   ("measurement options", self.measurement, other.measurement),
                                   ("seed", self.seed, other.seed)):
            if mine != theirs:
                return name
        return None

    def to_json(self) -> dict:
        return {"step": PARTIAL_STEP, "schema_version": self.schema_version, "source_sha256": self.source_sha256,
                "dataset": self.dataset, "measurement": self.measurement, "seed": self.seed,
                "shard": self.shard.describe(), "candidates": list(self.candidates),
                "results": [r.to_json() for r in self.results], "task": self.task}

    @classmethod
    def from_json(cls, payload: object, source: str) -> PartialTable:
        """The part in `payload` (parsed JSON of `source`); InputFileError if it is not one."""
        if not isinstance(payload, dict) or payload.get("step") != PARTIAL_STEP:
            raise InputFileError(NOT_A_PART, source, PART_HINT)
        if payload.get("schema_version") != PARTIAL_SCHEMA_VERSION:
            raise InputFileError(f"partial table schema version {payload.get('schema_version')!r}; this tinycomp "
                                 f"reads version {PARTIAL_SCHEMA_VERSION}", source, "measure it again")
        try:
            task = str(payload.get("task", "classify"))
            if task not in ("classify", "regress"):
                raise ValueError(f"task {task!r}")
            part = cls(source_sha256=str(payload["source_sha256"]), dataset=dict(payload["dataset"]),
                       measurement=dict(payload["measurement"]), seed=int(payload["seed"]),
                       shard=Shard.parse(payload["shard"]), candidates=[str(k) for k in payload["candidates"]],
                       results=[CandidateResult.from_json(r, task) for r in payload["results"]], task=task)
        except (AttributeError, KeyError, TypeError, ValueError, InvalidValue):
            raise InputFileError(NOT_A_PART, source, PART_HINT) from None
        stray = [r.key for r in part.results if r.key not in part.candidates]
        if stray:
            raise InputFileError(f"result for {stray[0]!r}, which is not one of this part's candidates", source, PART_HINT)
        return part


def merge_parts(parts: Iterable[tuple[str, PartialTable]], *, candidates: list[Candidate]) -> dict[str, CandidateResult]:
    """The results of parts (source, part) that come from the same model, data, options and seed and
    together cover every candidate exactly once; InputFileError naming the part that does not."""
    parts = list(parts)
    if not parts:
        raise InvalidValue("no partial tables to merge", "merge", "give every shard's PART.json")
    first_source, first = parts[0]
    seen: dict[str, str] = {}
    results: dict[str, CandidateResult] = {}
    for source, part in parts:
        differs = first.same_origin(part)
        if differs:
            raise InputFileError(f"measured with other {differs} than {first_source}", source,
                                 "merge only the parts of one `plan --shard` run")
        if not part.complete:
            missing = next(k for k in part.candidates if k not in {r.key for r in part.results})
            raise InputFileError(f"shard {part.shard.describe()} is incomplete (no result for {missing!r})", source,
                                 "run that shard to the end (with --resume) before merging")
        for result in part.results:
            if result.key in seen:
                raise InputFileError(f"{result.key!r} is measured in {seen[result.key]} too", source,
                                     "give each shard's part once")
            seen[result.key] = source
            results[result.key] = result
    absent = [c.key for c in candidates if c.key not in results]
    if absent:
        raise InputFileError(f"no part measured {absent[0]!r} ({len(absent)} candidate(s) missing)", first_source,
                             f"give all {first.shard.count} shards' parts")
    extra = [k for k in results if k not in {c.key for c in candidates}]
    if extra:
        raise InputFileError(f"{extra[0]!r} is not a candidate of this model and these options", seen[extra[0]],
                             "merge parts measured with the same --clusters and --layer")
    return results
