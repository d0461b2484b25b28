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

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.fileio import JsonDict
from tinycomp.metrics import CLASSIFY, Task, get_task
from tinycomp.plan.decision import Limit
from tinycomp.plan.provenance import Provenance
from tinycomp.records import Record

CONTROL = "control"
PARTIAL_SCHEMA_VERSION = 1
PARTIAL_STEP = "plan-partial"
NOT_A_PART = "not a partial sensitivity table written by `tinycomp plan`"
# The fast estimate's candidates fine-tune on at most this many of the fit rows (each epoch) and are
# measured on at most this many validation rows; the chosen plan's check uses every row. 4,096 rows
# are more than the whole fit split of mnist-sample (3,200), on which the fast estimate was validated;
# 2,048 validation rows measure a 97% accuracy to ±0.38 pp (800 rows on mnist-sample: ±0.9 pp).
FAST_FINE_TUNE_ROWS = 4096
FAST_VALIDATION_ROWS = 2048
PART_HINT = "give the .json files `plan --shard I/N -o PART.json` wrote (or delete a corrupt OUTPUT.partial.json)"


@dataclass(frozen=True)
class Candidate:
    """The control (tensor None) or one tensor (a Keras layer's kernel, a .tflite weight) at `bits` index
    bits: at most `values` levels (clusters) per value table, 2^bits unless a cluster count says fewer."""

    tensor: str | None = None
    bits: int | None = None
    clusters: int | None = None  # None: 2^bits

    @property
    def values(self) -> int | None:
        """The levels per value table (the key's number: a cluster count, 2^bits by default)."""
        if self.bits is None:
            return None
        return self.clusters if self.clusters is not None else 2 ** self.bits

    @property
    def key(self) -> str:
        return CONTROL if self.tensor is None else f"{self.tensor}/{self.values}"


@dataclass(frozen=True)
class CandidateResult:
    """What one candidate measured: validation accuracies zero-shot and/or fine-tuned (None: not measured)."""

    key: str
    zero_shot: float | None = None
    fine_tuned: float | None = None
    seconds: float = 0.0

    def to_json(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: JsonDict, task: Task = CLASSIFY) -> CandidateResult:
        """The result; ValueError for a score outside the task's range (accuracy 0–1, SNR ±SNR_CAP_DB dB)."""
        low, high = task.score_range
        result = cls(**payload)
        for value in (result.zero_shot, result.fine_tuned):
            if value is not None and not low <= float(value) <= high:
                raise ValueError(f"score {value!r}")
        return result


def candidates_of(usable: dict[str, list[int]]) -> list[Candidate]:
    """Every candidate in the canonical order: the control, then each tensor's cluster counts (levels per
    value table), many to few."""
    return [Candidate()] + [Candidate(name, bits_for(c), c) for name, counts in usable.items()
                            for c in sorted(counts, reverse=True)]


def bits_for(values: int) -> int:
    """Index bits that address `values` levels (at least 1)."""
    return max(1, (int(values) - 1).bit_length())


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


def needs_fine_tune(zero_shot: float, *, reference: float, noise: float, scale: float = 100.0) -> bool:
    """The fast estimate fine-tunes a candidate only when its zero-shot drop is beyond the noise
    (`scale`: drop units per unit of score, see metrics.Task)."""
    return scale * (reference - zero_shot) > noise


@dataclass(frozen=True)
class Drop:
    """One candidate's drop (in the task's drop unit) and score; fine_tuned False for a zero-shot estimate."""

    drop: float
    accuracy: float
    fine_tuned: bool

    def describe(self, task: Task = CLASSIFY) -> str:
        return task.score_text(self.accuracy) + ("" if self.fine_tuned else " (zero-shot)")


def fine_tune_limit(max_drop: float | None, *, reference: float, control: float, noise: float,
                      scale: float = 100.0) -> Limit | None:
    """When a fine-tuned candidate cannot be part of any plan within the budget (the budget plus the most
    fine-tuning can credit, with its noise, as `Decision.may_fit` allows; other layers' drops are ≥ 0)."""
    if max_drop is None:
        return None
    return Limit(max_drop + max(0.0, scale * (control - reference)), noise)


def ruled_out(drops: dict[int, float], values: int, limit: Limit | None) -> bool:
    """A tensor's candidate at `values` levels cannot be part of a plan within the budget when a candidate
    of the same tensor with more levels (`drops`: levels → measured drop) measured a drop `limit` refuses
    (`Decision.may_fit`): fewer levels never count as better (`choose.counted_drops`). Both backends
    leave such candidates out: the Keras one their fine-tunes, the .tflite one their measurement."""
    return limit is not None and any(v > values and limit.exceeded_by(d) for v, d in drops.items())


class Estimate(ABC):
    """How a candidate's drop is estimated: what to measure for it, and which measurement counts.

    Two estimates, `FINE_TUNE` and `FAST`, in `ESTIMATES` by name (the `--estimate` value and the
    records' "estimate").
    """

    name: ClassVar[str]
    fine_tune_rows: ClassVar[int]  # fit rows per candidate when not given (0: all)
    validation_rows: ClassVar[int]  # validation rows per candidate when not given (0: all)
    zero_shot: ClassVar[bool]  # candidates are measured zero-shot first, and options record fine_tuned
    announcement: ClassVar[str]  # what the measurement announcement says of it

    @abstractmethod
    def still_needed(self, candidate: Candidate, result: CandidateResult | None, *, reference: float, noise: float,
                     hopeless: bool = False, scale: float = 100.0) -> tuple[bool, bool]:
        """(measure zero-shot, fine-tune) still to do for `candidate`, given what `result` already holds.

        `hopeless` (known only when measuring a layer's counts in order) skips a fine-tune whose result
        `assemble_drops` would discard anyway."""

    @abstractmethod
    def counted(self, result: CandidateResult, *, hopeless: bool) -> tuple[float, bool] | None:
        """(score, fine_tuned) that counts for one count of a layer (None: the needed measurement is missing);
        `hopeless` when a larger count of the layer was too harmful to choose."""


def _not_worse(result: CandidateResult) -> bool:
    """The candidate's fine-tune scores no lower than its zero-shot measurement (or it has none):
    a fine-tune that loses accuracy is not used."""
    return result.fine_tuned is not None and (result.zero_shot is None or result.fine_tuned >= result.zero_shot)


@dataclass(frozen=True)
class FineTune(Estimate):
    """Every candidate fine-tuned (and measured zero-shot, which costs no training): its fine-tuned drop vs
    the fine-tuned control counts, unless it scores below zero-shot (then the zero-shot drop counts)."""

    name: ClassVar[str] = "fine-tune"
    fine_tune_rows: ClassVar[int] = 0
    validation_rows: ClassVar[int] = 0
    zero_shot: ClassVar[bool] = True
    announcement: ClassVar[str] = "zero-shot and fine-tuned, "

    def still_needed(self, candidate: Candidate, result: CandidateResult | None, *, reference: float, noise: float,
                     hopeless: bool = False, scale: float = 100.0) -> tuple[bool, bool]:
        tune = result is None or result.fine_tuned is None
        return candidate.tensor is not None and (result is None or result.zero_shot is None), tune

    def counted(self, result: CandidateResult, *, hopeless: bool) -> tuple[float, bool] | None:
        if result.fine_tuned is None:
            return None
        if _not_worse(result):
            return result.fine_tuned, True
        assert result.zero_shot is not None
        return result.zero_shot, False


@dataclass(frozen=True)
class Fast(Estimate):
    """Every candidate zero-shot; fine-tuned only when its zero-shot drop is beyond the noise and no
    larger count of its layer was too harmful to choose."""

    name: ClassVar[str] = "fast"
    fine_tune_rows: ClassVar[int] = FAST_FINE_TUNE_ROWS
    validation_rows: ClassVar[int] = FAST_VALIDATION_ROWS
    zero_shot: ClassVar[bool] = True
    announcement: ClassVar[str] = "zero-shot, then fine-tuning only the candidates that can be chosen, "

    def still_needed(self, candidate: Candidate, result: CandidateResult | None, *, reference: float, noise: float,
                     hopeless: bool = False, scale: float = 100.0) -> tuple[bool, bool]:
        zero = result.zero_shot if result else None
        have_tuned = result is not None and result.fine_tuned is not None
        if candidate.tensor is None:
            return False, not have_tuned
        if zero is None:
            return True, not hopeless  # decided after the zero-shot measurement
        wanted = not hopeless and needs_fine_tune(zero, reference=reference, noise=noise, scale=scale)
        return False, wanted and not have_tuned

    def counted(self, result: CandidateResult, *, hopeless: bool) -> tuple[float, bool] | None:
        if _not_worse(result) and not hopeless:
            assert result.fine_tuned is not None
            return result.fine_tuned, True
        return None if result.zero_shot is None else (result.zero_shot, False)


FINE_TUNE: Estimate = FineTune()
FAST: Estimate = Fast()
ESTIMATES: dict[str, Estimate] = {e.name: e for e in (FINE_TUNE, FAST)}


def estimate_named(name: str) -> Estimate:
    """The estimate called `name`; InvalidValue("estimate") for another."""
    try:
        return ESTIMATES[name]
    except KeyError:
        raise InvalidValue(f"estimate must be one of {', '.join(ESTIMATES)}, got {name!r}", "estimate") from None


def assemble_drops(counts: list[int], results: dict[int, CandidateResult], *, estimate: Estimate, reference: float,
                   control: float, limit: Limit | None, scale: float = 100.0) -> dict[int, Drop]:
    """One layer's drops from its candidates' results.

    A fine-tuned score counts as its drop vs the control, unless it is below the same candidate's
    zero-shot score: a fine-tune that loses accuracy is not used, and the zero-shot drop vs the given
    model counts instead (as `cluster` keeps the zero-shot model then). fine-tune: every count was
    fine-tuned. fast: going from many clusters to few, a count that was fine-tuned counts as above,
    until one exceeds `limit`; every other count (within the noise zero-shot, or below a count too
    harmful to choose) counts its zero-shot drop vs the given model, which overstates the fine-tuned
    one: the error is on the safe side.
    """
    drops: dict[int, Drop] = {}
    hopeless = False
    for c in sorted(counts, reverse=True):
        counted = estimate.counted(results[c], hopeless=hopeless)
        if counted is None:
            raise ValueError(f"{results[c].key} lacks the measurement the {estimate.name} estimate needs")
        score, tuned = counted
        drops[c] = Drop(scale * ((control if tuned else reference) - score), score, tuned)
        if tuned or results[c].fine_tuned is not None:  # a fine-tune that lost to zero-shot counts too
            hopeless = hopeless or (limit is not None and limit.exceeded_by(drops[c].drop))
    return {c: drops[c] for c in counts}


@dataclass(frozen=True)
class PartialTable(Record):
    """Some candidates' results and what they were measured on (one shard, or an interrupted run)."""

    STEP: ClassVar[str | None] = PARTIAL_STEP
    HINT: ClassVar[str] = PART_HINT
    SCHEMA: ClassVar[int] = PARTIAL_SCHEMA_VERSION
    VERSIONLESS: ClassVar[int | None] = None

    source_sha256: str
    dataset: JsonDict
    measurement: JsonDict  # the Measurement's fields, as JSON
    seed: int
    shard: Shard
    candidates: list[str]  # keys of the candidates this part is to measure, in the canonical order
    results: list[CandidateResult] = field(default_factory=list)
    schema_version: int = PARTIAL_SCHEMA_VERSION
    task: Task = CLASSIFY  # what the scores are; parts from before it are classify

    @property
    def complete(self) -> bool:
        return {r.key for r in self.results} >= set(self.candidates)

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.source_sha256, self.dataset, self.task)

    def same_origin(self, other: PartialTable) -> str | None:
        """What differs between the two parts' model, data, task, options and seed (None: nothing)."""
        options = (("measurement options", self.measurement, other.measurement), ("seed", self.seed, other.seed))
        return self.provenance.differs(other.provenance) or next(
            (name for name, mine, theirs in options if mine != theirs), None)

    def to_json(self) -> JsonDict:
        return {"step": PARTIAL_STEP, "schema_version": self.schema_version, "source_sha256": self.source_sha256,
                "dataset": self.dataset, "measurement": self.measurement, "seed": self.seed,
                "shard": self.shard.describe(), "candidates": list(self.candidates),
                "results": [r.to_json() for r in self.results], "task": self.task.name}

    @classmethod
    def wrong_kind(cls, step: object, *, is_object: bool = True) -> str:
        return NOT_A_PART

    @classmethod
    def wrong_version(cls, version: object) -> tuple[str, str]:
        return f"partial table schema version {version!r}; this tinycomp reads version {cls.SCHEMA}", "measure it again"

    @classmethod
    def from_payload(cls, payload: JsonDict, source: str) -> PartialTable:
        """The part in `payload` (its header checked); InputFileError if it is malformed."""
        try:
            task = get_task(str(payload.get("task", CLASSIFY.name)))
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
