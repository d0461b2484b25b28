"""The budgeted choice of a plan: pure (numpy at most; no TensorFlow, no tflite-micro).

A `SensitivityTable` holds every layer's options (a cluster count with its measured accuracy drop
and its exact byte cost). `choose_plan` is a multiple-choice knapsack solved exactly by merging
per-layer Pareto fronts (bytes, drop). It assumes per-layer drops add up, which holds roughly for
small drops, so `checked_plan` measures the chosen layers clustered together and chooses again when
that is over the accuracy budget. `choose_plan_within_ram` adds the TFLM arena (LUT decoding puts
decoded weights in the arena), measured by a callable the caller provides; given `Slicing`, it
slices large kernels (a decode budget for `compress`) before it leaves a layer uncompressed.

Measured drops are smoothed before the choice: fewer clusters never count as better than more (an
isotonic fit, which averages the noise of single runs), and a drop below zero (clustering measured
as helping) counts as zero.

Errors name the budget's field (`max_drop`, `target_bytes`, `target_ratio`, `ram_bytes`), never a
command-line option.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tinycomp.bounds import Checked
from tinycomp.errors import InvalidValue, NothingFits
from tinycomp.fileio import JsonDict
from tinycomp.metrics import CLASSIFY, Task, get_task
from tinycomp.plan.decision import DECISION, Measured
from tinycomp.specs import MAX_BITWIDTH, ClusteringSpec, LayerClustering

DEFAULT_CLUSTER_COUNTS = (2, 4, 8, 16, 32, 64)

# A combination of options: (layer bytes, Σ drop, one option per layer so far)
Point = tuple[int, float, tuple["Option", ...]]
# Arena bytes of the plan's file for each given set of compressed layers (in the order given).
ArenasOf = Callable[[list[frozenset[str]]], list[int]]
SLICING_PATIENCE = 4  # decode budgets measured past the smallest arena so far before giving up


@dataclass
class Slicing:
    """What choosing with sliced kernels needs from the caller (see `make.Sizes`)."""

    budgets: Callable[[frozenset[str]], list[int]]  # decode budgets worth trying for a set of layers, largest first
    arenas: Callable[[frozenset[str], list[int]], list[int]]  # the set's arena sliced at each of those budgets
    batch: int = 1  # budgets measured at once (worker processes)


@dataclass(frozen=True)
class Budget:
    """What a plan must meet: exactly one objective (an accuracy drop, bytes, or a ratio to the
    float32 file, which becomes bytes once `float32_bytes` is known), and optionally the arena."""

    max_drop: float | None = None
    target_bytes: int | None = None
    target_ratio: float | None = None
    ram_bytes: int | None = None
    credit_fine_tuning: bool = True
    float32_bytes: int | None = None  # with target_ratio: the model as float32 .tflite (see `resolved`)
    task: Task = CLASSIFY  # max_drop is in the task's drop unit (task.unit: pp of accuracy, dB of SNR)
    min_agreement: float | None = None  # classifiers: top-1 agreement with the given model, percent (lower bound)

    def __post_init__(self) -> None:
        given = [name for name in ("max_drop", "target_bytes", "target_ratio") if getattr(self, name) is not None]
        if len(given) != 1 and not (set(given) == {"target_bytes", "target_ratio"} and self.float32_bytes):
            raise InvalidValue("give exactly one budget: an accuracy drop, a byte target or a size ratio",
                               "budget", "e.g. an accuracy drop of 0.5 pp")
        # max_drop may be negative: the check re-chooses below a prediction that credits fine-tuning
        for name, low in (("target_bytes", 0), ("target_ratio", 1.0), ("ram_bytes", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise InvalidValue(f"{name} must be at least {low:g}, got {value:g}", name)

    @property
    def field(self) -> str:
        """The field of the objective: the task's drop budget field, target_ratio or target_bytes."""
        if self.max_drop is not None:
            return self.task.budget_field
        return "target_ratio" if self.target_ratio is not None else "target_bytes"

    def resolved(self, float32_bytes: int) -> Budget:
        """With a target ratio: the same budget with the byte target it means for a float32 file of that size."""
        if self.target_ratio is None:
            return self
        return replace(self, float32_bytes=float32_bytes, target_bytes=math.floor(float32_bytes / self.target_ratio))

    def bytes_text(self) -> str:
        """'39,141 bytes', with the ratio it came from: '39,141 bytes (12× smaller than float32's 469,692)'."""
        text = f"{self.target_bytes:,} bytes"
        if self.target_ratio is not None:
            text += f" ({self.target_ratio:g}× smaller than float32's {self.float32_bytes:,})"
        return text

    def describe(self) -> str:
        text = (f"{self.task.drop_text()} ≤ {self.max_drop:g} {self.task.unit}" if self.max_drop is not None
                else f"≤ {self.target_bytes:,} bytes")
        if self.target_ratio is not None:
            text += f", {self.target_ratio:g}× smaller than float32's {self.float32_bytes:,}"
        if self.ram_bytes is not None:
            text += f", arena ≤ {self.ram_bytes:,} bytes"
        return text


@dataclass
class Option:
    """One choice for one layer: a cluster count (None: leave the layer unclustered)."""

    clusters: int | None
    bits: int  # index bitwidth; 8 for an unclustered int8 tensor
    bytes: int  # what the layer costs in the compressed .tflite (indices, tables, DECODE op and tensors)
    ideal_bytes: int  # numel × bits / 8 + value tables (numel for unclustered)
    drop: float = 0.0  # counted drop in the task's unit (conservative, see module docstring)
    measured_drop: float | None = None  # measured drop vs the fine-tuned control
    accuracy: float | None = None  # validation accuracy of the one-layer-clustered model
    fine_tuned: bool | None = None  # False when the drop counted is the zero-shot one (None: older tables)
    zero_shot_drop: float | None = None  # measured drop without fine-tuning, vs the given model (None: not measured)


# Drops are in the task's unit (pp or dB); the JSON keys keep the names they had when every plan was a classifier's.
JSON_KEYS = {"drop": "drop_pp", "measured_drop": "measured_pp", "predicted_drop": "predicted_drop_pp",
             "sum_drop": "sum_drop_pp", "credit": "credit_pp", "checked_drop": "checked_drop_pp",
             "fine_tune_gain": "fine_tune_gain_pp", "zero_shot_drop": "zero_shot_pp",
             "checked_noise": "checked_noise_pp"}
FIELDS = {key: name for name, key in JSON_KEYS.items()}


def json_keys(fields: JsonDict) -> JsonDict:
    """Fields as their JSON keys (same order)."""
    return {JSON_KEYS.get(k, k): v for k, v in fields.items()}


def field_names(payload: JsonDict) -> JsonDict:
    """JSON keys as field names (same order)."""
    return {FIELDS.get(k, k): v for k, v in payload.items()}


def _option_json(option: JsonDict) -> JsonDict:
    """An option's JSON, without the keys older tables lack when they are unset."""
    return json_keys({k: v for k, v in option.items() if not (k in ("fine_tuned", "zero_shot_drop") and v is None)})


@dataclass
class LayerSensitivity:
    """A layer's options, with what the plan needs to know about its weights."""

    name: str
    kind: str
    weights: int
    channels: int
    per_channel: bool  # clustered per output channel (Conv2D)
    options: list[Option]

    def option(self, clusters: int | None) -> Option:
        for o in self.options:
            if o.clusters == clusters:
                return o
        raise KeyError(clusters)


@dataclass
class SensitivityTable:
    """Every layer's options plus the numbers all of them share."""

    layers: list[LayerSensitivity]
    int8_bytes: int  # the unclustered int8 .tflite (stripped, when planned for `compress --strip`)
    decode_overhead: int = 0  # bytes paid once when any tensor is compressed (DECODE operator code, alignment)
    reference_accuracy: float = 0.0  # given model on the validation split
    control_accuracy: float = 0.0  # given model fine-tuned like the candidates, unclustered
    validation_samples: int = 0
    epochs: int = 0
    seed: int = 0
    seconds: float = 0.0
    # what the scores are and the drops' unit: classify: accuracies in [0, 1], drops in pp; regress:
    # output SNRs in dB, drops in dB (see metrics.Task)
    task: Task = CLASSIFY
    learning_rate: float | None = None  # Adam's rate of the fine-tunes (None: tables from before it was recorded)

    @property
    def unit(self) -> str:
        return self.task.unit

    @property
    def fixed_bytes(self) -> int:
        """Bytes of the int8 file that no choice changes (biases, quantization, operators, other weights)."""
        return self.int8_bytes - sum(layer.option(None).bytes for layer in self.layers)

    @property
    def fine_tune_gain(self) -> float:
        """The control's score over the given model's, in drop units."""
        return self.task.scale * (self.control_accuracy - self.reference_accuracy)

    def to_json(self) -> JsonDict:
        payload = asdict(self)
        for layer in payload["layers"]:
            layer["options"] = [_option_json(o) for o in layer["options"]]
        payload["fixed_bytes"] = self.fixed_bytes
        payload["fine_tune_gain_pp"] = self.fine_tune_gain
        payload["task"] = self.task.name
        return payload

    @classmethod
    def from_json(cls, payload: JsonDict) -> SensitivityTable:
        """The table `to_json` wrote (derived keys are recomputed); KeyError/TypeError/ValueError if malformed."""
        fields = {k: v for k, v in payload.items() if k not in ("fixed_bytes", "fine_tune_gain_pp", "layers")}
        fields["task"] = task_named(fields.get("task", CLASSIFY.name))
        layers = [LayerSensitivity(**{**layer, "options": [Option(**field_names(o)) for o in layer["options"]]})
                  for layer in payload["layers"]]
        if not layers:
            raise ValueError("no layers")
        for layer in layers:
            layer.option(None)  # every layer needs its unclustered option (KeyError otherwise)
        return cls(layers=layers, **fields)


@dataclass
class Plan:
    """The chosen option per layer and what it predicts."""

    choices: dict[str, Option]
    predicted_bytes: int
    predicted_drop: float  # vs the given model: Σ counted drops − credited fine-tuning gain
    sum_drop: float  # Σ counted per-layer drops
    credit: float  # fine-tuning gain counted against the drops
    ideal_bytes: int  # Σ ideal bytes of the eligible layers
    objective: str
    budget: float | int
    exact_bytes: int | None = None  # synthetic compression of the whole plan at once (see `make.make_plan`)
    arena_bytes: int | None = None  # TFLM arena of that file (see choose_plan_within_ram)
    checked_drop: float | None = None  # all its layers clustered at once, fine-tuned, measured (see checked_plan)
    checked_noise: float | None = None  # that measurement's standard error as a paired difference (None: not known)
    # that measurement's agreement with the given model's outputs (`Task.agreement`; None: not measured)
    checked_agreement: dict[str, float] | None = None
    uncompressed_for_ram: list[str] = field(default_factory=list)  # layers left out to meet the RAM budget
    decode_budget: int | None = None  # kernels decoding to more are sliced (`compress --decode-budget`)
    # fine-tuning epochs that reproduce the (checked) drop: 0 when the plan is used zero-shot (None: older records)
    epochs: int | None = None
    stepped: list[str] = field(default_factory=list)  # steps down the check's refinement took (see refined_plan)
    # the check's paired bounds (`bounds.Checked` as JSON: estimate, bound, rows, groups; None: not measured)
    checked_bound: dict[str, Any] | None = None

    def clustered(self) -> dict[str, Option]:
        return {name: o for name, o in self.choices.items() if o.clusters is not None}

    def to_json(self) -> JsonDict:
        payload = asdict(self)
        payload["choices"] = {name: _option_json(o) for name, o in payload["choices"].items()}
        return json_keys(payload)

    @classmethod
    def from_json(cls, payload: JsonDict) -> Plan:
        """The plan `to_json` wrote; KeyError/TypeError/ValueError if malformed."""
        choices = {name: Option(**field_names(o)) for name, o in payload["choices"].items()}
        return cls(**{**field_names(payload), "choices": choices})



def counted_drops(options: list[Option]) -> None:
    """Set each option's drop from measured_drop: the isotonic (pool-adjacent-violators) fit that
    never has fewer clusters doing better than more, then clipped at 0.

    Single measurements are noisy (±1 pp on 800 validation images); pooling violators averages
    that noise instead of letting one unlucky run at a high count raise every lower count.
    """
    clustered = sorted((o for o in options if o.clusters is not None), key=lambda o: -(o.clusters or 0))
    blocks: list[tuple[float, int]] = []  # (mean, size); means must not decrease from many clusters to few
    for o in clustered:
        blocks.append((o.measured_drop if o.measured_drop is not None else 0.0, 1))
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append(((m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2))
    fitted = [mean for mean, size in blocks for _ in range(size)]
    for o, value in zip(clustered, fitted):
        o.drop = max(0.0, value)
    for o in options:
        if o.clusters is None:
            o.drop = 0.0


def _pareto(points: list[Point]) -> list[Point]:
    """Keep the (bytes, drop, choice) points no other point beats on both bytes and drop."""
    points.sort(key=lambda p: (p[0], p[1]))
    front, best = [], math.inf
    for p in points:
        if p[1] < best - 1e-12:
            front.append(p)
            best = p[1]
    return front


def pareto_front(table: SensitivityTable) -> list[Point]:
    """All Pareto-optimal (layer bytes, Σ drop, option per layer) combinations, merged layer by layer."""
    front: list[Point] = [(0, 0.0, ())]
    for layer in table.layers:
        merged: list[Point] = [(b + o.bytes, d + o.drop, (*choice, o)) for b, d, choice in front
                               for o in layer.options]
        front = _pareto(merged)
    return front




def zero_shot_table(table: SensitivityTable) -> SensitivityTable | None:
    """The table with every option's zero-shot drop (vs the given model) counted instead, for a plan
    used without fine-tuning; None when some option was not measured zero-shot (older tables)."""
    layers = []
    for layer in table.layers:
        options = [replace(o, measured_drop=o.zero_shot_drop, fine_tuned=False) for o in layer.options]
        if any(o.clusters is not None and o.measured_drop is None for o in options):
            return None
        counted_drops(options)
        layers.append(replace(layer, options=options))
    return replace(table, layers=layers)


def nothing_clustered(table: SensitivityTable) -> Plan:
    """The plan that clusters no layer: the int8 model as it is (no drop from clustering, no fine-tuning)."""
    choices = {layer.name: layer.option(None) for layer in table.layers}
    return Plan(choices, table.int8_bytes, 0.0, 0.0, 0.0, sum(o.ideal_bytes for o in choices.values()),
                "min-bytes", 0.0, epochs=0)


def least_harmful(table: SensitivityTable) -> tuple[str, Option] | None:
    """The single clustered option with the smallest counted drop (None: the table has none)."""
    options = [(layer.name, o) for layer in table.layers for o in layer.options if o.clusters is not None]
    return min(options, key=lambda pair: (pair[1].drop, pair[1].bytes)) if options else None


def choose_plan(table: SensitivityTable, budget: Budget) -> Plan:
    """Fewest predicted bytes with the predicted drop ≤ budget.max_drop, or (with a byte target)
    the smallest predicted drop with predicted bytes ≤ budget.target_bytes.

    Two predictions are solved and the better plan kept: fine-tuned (each option's counted drop, as
    the table counts it, minus the control's gain over the given model, since `cluster` fine-tunes
    too; a gain is credited only with budget.credit_fine_tuning, a loss always counts) and, when the
    table has every option's zero-shot drop, zero-shot (the sum of those, no fine-tuning: `Plan.epochs`
    0). Under a drop budget the plan that clusters nothing (the int8 model, no drop) is a candidate
    too: the one chosen when no layer can be clustered within the budget. A byte target nothing
    reaches is NothingFits.
    """
    if budget.max_drop is None and budget.target_bytes is None:
        raise InvalidValue("a target ratio needs the float32 size resolved before choosing", "target_ratio",
                           "call Budget.resolved(float32_bytes) first")
    if not table.layers:
        raise NothingFits("no layer to plan", None, "the model has no clusterable layer")
    gain = table.fine_tune_gain
    bases = [(table, gain if budget.credit_fine_tuning else min(gain, 0.0), table.epochs)]
    zero_shot = zero_shot_table(table)
    if zero_shot is not None and table.epochs > 0:
        bases.append((zero_shot, 0.0, 0))
    fixed = table.fixed_bytes + table.decode_overhead
    plans = [_plan_of(table, best, fixed, credit, epochs) for basis, credit, epochs in bases
             for best in [_best(basis, budget, fixed, credit)] if best is not None]
    if budget.max_drop is not None:
        plans.append(nothing_clustered(table))
        chosen = min(plans, key=lambda p: (p.predicted_bytes, p.predicted_drop))
        chosen.objective, chosen.budget = "min-bytes", budget.max_drop
        return chosen
    if not plans:
        front = pareto_front(table)
        smallest = min(p[0] for p in front if any(o.clusters is not None for o in p[2])) + fixed
        raise NothingFits(f"no plan fits in {budget.bytes_text()}: the smallest predicted is {smallest:,} bytes",
                          budget.field, f"{'lower the ratio' if budget.target_ratio else 'raise the target'} "
                          "or add smaller cluster counts (e.g. 2,4,...)")
    chosen = min(plans, key=lambda p: (p.predicted_drop, p.predicted_bytes))
    chosen.objective, chosen.budget = "min-drop", budget.target_bytes or 0
    return chosen


def _best(table: SensitivityTable, budget: Budget, fixed: int, credit: float) -> tuple[int, float, tuple[Option, ...]] | None:
    """The Pareto point (bytes, Σ drop, options) with at least one clustered layer that the budget's
    objective prefers, or None when none fits."""
    front = [p for p in pareto_front(table) if any(o.clusters is not None for o in p[2])]
    if budget.max_drop is not None:
        fits = [p for p in front if p[1] - credit <= budget.max_drop + 1e-9]
        return min(fits, key=lambda p: (p[0], p[1])) if fits else None
    fits = [p for p in front if p[0] + fixed <= (budget.target_bytes or 0)]
    return min(fits, key=lambda p: (p[1], p[0])) if fits else None


def _plan_of(table: SensitivityTable, point: tuple[int, float, tuple[Option, ...]], fixed: int, credit: float,
             epochs: int) -> Plan:
    """The Plan of a Pareto point, its choices being `table`'s own options (whichever basis chose them)."""
    choices = {layer.name: layer.option(option.clusters) for layer, option in zip(table.layers, point[2])}
    return Plan(choices, point[0] + fixed, point[1] - credit, point[1], credit,
                sum(o.ideal_bytes for o in choices.values()), "min-drop", 0, epochs=epochs)


def choose_plan_within_ram(table: SensitivityTable, budget: Budget, arenas_of: ArenasOf,
                           slicing: Slicing | None = None) -> Plan:
    """`choose_plan`, keeping the plan's measured TFLM arena within budget.ram_bytes.

    LUT decoding puts a compressed layer's decoded int8 weights in the arena while its consumer
    runs, so the arena depends on which layers are compressed, not on their bitwidths. If the
    chosen plan's arena exceeds the budget, then, with `slicing`, the largest decode budget (the
    fewest slices, the least flash and bookkeeping) whose measured arena fits is taken. Otherwise
    the compressed layer with the largest single-layer arena is left uncompressed and the choice
    is made again: greedy (decoded tensors of different layers can share arena), but the arena of
    the returned plan is always measured. Without slicing, a layer whose decoding alone exceeds
    the budget is never compressed.
    """
    ram_budget = budget.ram_bytes
    if ram_budget is None:
        raise InvalidValue("choosing within RAM needs a RAM budget", "ram_bytes")
    names = [layer.name for layer in table.layers if len(layer.options) > 1]
    if not names:
        raise NothingFits("no layer to plan", None, "the model has no clusterable layer")
    uncompressed, *single = arenas_of([frozenset()] + [frozenset([n]) for n in names])
    if uncompressed > ram_budget:
        raise NothingFits(f"the model needs {uncompressed:,} arena bytes with no layer compressed, more than "
                          f"the RAM budget of {ram_budget:,}", "ram_bytes",
                          "raise the RAM budget or make the model's activations smaller")
    alone = dict(zip(names, single))
    kept = {n for n in names if alone[n] > ram_budget} if slicing is None else set()
    while True:
        if len(kept) == len(names) and budget.max_drop is not None:
            plan = nothing_clustered(table)  # within the drop budget and the arena: the fewest bytes left
            plan.budget, plan.arena_bytes, plan.uncompressed_for_ram = budget.max_drop, uncompressed, sorted(kept)
            return plan
        if len(kept) == len(names):
            least = min(names, key=alone.__getitem__)
            raise NothingFits(f"no layer can be compressed within the RAM budget of {ram_budget:,} bytes: "
                              f"decoding even {least} needs {alone[least]:,} arena bytes"
                              + (" (and slicing it did not fit either)" if slicing else ""), "ram_bytes",
                              "raise the RAM budget (LUT decoding costs arena), or quantize without compressing")
        try:
            plan = choose_plan(_uncompressed(table, kept), budget)
        except NothingFits as error:
            if not kept:
                raise
            raise NothingFits(f"{error.what}, with {', '.join(sorted(kept))} left uncompressed to keep the arena "
                              f"within {ram_budget:,} bytes", error.field,
                              f"{error.hint}, or raise the RAM budget") from None
        compressed = frozenset(plan.clustered())
        [arena] = arenas_of([compressed]) if compressed else [uncompressed]
        if arena > ram_budget and slicing is not None and compressed:
            found = sliced_within(compressed, ram_budget, slicing)
            if found is not None:
                plan.decode_budget, arena = found
        if arena <= ram_budget:
            plan.arena_bytes, plan.uncompressed_for_ram = arena, sorted(kept)
            return plan
        kept.add(max(plan.clustered(), key=alone.__getitem__))


def sliced_within(names: frozenset[str], ram_budget: int, slicing: Slicing) -> tuple[int, int] | None:
    """(decode budget, arena): the largest decode budget whose measured arena fits `ram_budget`, or None.

    Budgets are measured from the largest down, `slicing.batch` at a time. Smaller budgets mean more
    slices, and each slice adds TFLM bookkeeping, so the arena stops falling at some point: the
    search ends SLICING_PATIENCE budgets after the smallest arena seen.
    """
    budgets = slicing.budgets(names)
    smallest, since = None, 0
    for start in range(0, len(budgets), max(1, slicing.batch)):
        batch = budgets[start:start + max(1, slicing.batch)]
        for decode_budget, arena in zip(batch, slicing.arenas(names, batch)):
            if arena <= ram_budget:
                return decode_budget, arena
            smallest, since = (arena, 0) if smallest is None or arena < smallest else (smallest, since + 1)
        if since >= SLICING_PATIENCE:
            return None
    return None


def checked_plan(choose: Callable[[float | None], Plan], measure_drop: Callable[[Plan], float],
                 max_drop: float | None, noise: float = 0.0, attempts: int = 3,
                 min_agreement: float | None = None) -> tuple[Plan, list[Plan]]:
    """The plan `choose(budget)` makes, checked by measuring its drop with all its layers clustered
    at once (`measure_drop`), since per-layer drops need not add up.

    Under an accuracy budget, a plan whose measured drop exceeds it by more than the noise of that
    measurement (`Plan.checked_noise` when the measurement set it: the standard error of the paired
    difference on the same rows; else `noise`, that of one validation score) is chosen again under the
    budget lowered by the prediction's shortfall (to the drop's 95% upper bound, which decides, when the
    check gave one), up to `attempts` plans. Returns the plan to use (the
    smallest whose measured drop is within budget + noise, else the least harmful) and every plan tried.
    """
    def within(plan: Plan) -> bool:
        return DECISION.accepts(measured_of(plan, noise), max_drop or 0.0, min_agreement)

    plan = choose(max_drop)
    plan.checked_drop = measure_drop(plan)
    tried = [plan]
    if max_drop is None:
        return plan, tried
    budget = max_drop
    while not within(plan) and len(tried) < attempts:
        budget -= _decided_on(plan) - plan.predicted_drop  # below the last prediction: another plan
        try:
            plan = choose(budget)
        except NothingFits:
            break
        if any(plan.choices == p.choices for p in tried):
            break
        plan.checked_drop = measure_drop(plan)
        tried.append(plan)
    fits = [p for p in tried if within(p)]
    if fits:
        return min(fits, key=lambda p: (p.predicted_bytes, _checked(p))), tried
    return min(tried, key=_checked), tried


@dataclass(frozen=True)
class Step:
    """One layer moved to its next cheaper option: the bytes it saves and the counted drop it adds."""

    layer: str
    option: Option
    saved_bytes: int
    added: float

    @property
    def describe(self) -> str:
        return f"{self.layer}→{self.option.clusters}"


def step_downs(table: SensitivityTable, plan: Plan, *, skip: set[str] | frozenset[str] = frozenset(),
               above: dict[str, int] | None = None) -> list[Step]:
    """Each layer's step to the cheapest of its least harmful options with fewer bytes than the plan's
    and, for a layer in `above`, more bytes than that (a refused step's); layers in `skip` left out.
    The most bytes saved per counted drop added first (a step that adds no drop: by bytes saved)."""
    above = above or {}
    steps = []
    for layer in table.layers:
        current = plan.choices[layer.name]
        cheaper = [o for o in layer.options if above.get(layer.name, -1) < o.bytes < current.bytes]
        if layer.name in skip or not cheaper:
            continue
        option = min(cheaper, key=lambda o: (o.drop, o.bytes))  # the cheapest of the least harmful
        steps.append(Step(layer.name, option, current.bytes - option.bytes, max(option.drop - current.drop, 0.0)))
    return sorted(steps, key=lambda s: (-s.saved_bytes / max(s.added, 1e-3), -s.saved_bytes, s.layer))


def stepped(plan: Plan, step: Step, decode_overhead: int = 0) -> Plan:
    """`plan` with one step taken: bytes (with the once-paid `decode_overhead` when it is the first
    clustered layer) and the Σ-of-drops prediction updated; measured fields cleared."""
    choices = {**plan.choices, step.layer: step.option}
    old = plan.choices[step.layer]
    added = step.option.drop - old.drop
    first = 0 if plan.clustered() else decode_overhead
    return replace(plan, choices=choices, predicted_bytes=plan.predicted_bytes - step.saved_bytes + first,
                   predicted_drop=plan.predicted_drop + added, sum_drop=plan.sum_drop + added,
                   ideal_bytes=plan.ideal_bytes - old.ideal_bytes + step.option.ideal_bytes, exact_bytes=None,
                   arena_bytes=plan.arena_bytes if old.clusters is not None else None,  # same layers decoded
                   checked_drop=None, checked_noise=None, checked_bound=None, stepped=[*plan.stepped, step.describe])


def _checked(plan: Plan) -> float:
    """The plan's measured drop (every plan `checked_plan` tried was measured)."""
    assert plan.checked_drop is not None
    return plan.checked_drop


def _decided_on(plan: Plan) -> float:
    """What the check compares with the budget: the drop's 95% upper bound when it gave one, else the drop."""
    if plan.checked_bound is None:
        return _checked(plan)
    return Checked.from_json(plan.checked_bound, "the plan's check").drop.high


def upper_bound_text(plan: Plan) -> str:
    """', 95% upper bound +0.44 pp on 12,000 rows' of a checked plan ('' without bounds)."""
    if plan.checked_bound is None:
        return ""
    drop = Checked.from_json(plan.checked_bound, "the plan's check").drop
    return f", {100 * drop.confidence:g}% upper bound {drop.high:+.2f} {drop.unit} on {drop.resting_on}"


def measured_of(plan: Plan, noise: float) -> Measured:
    """The plan's checked drop with its paired noise (`noise`, that of one validation score, when the
    measurement gave none)."""
    checked = None if plan.checked_bound is None else Checked.from_json(plan.checked_bound, "the plan's check")
    return Measured(_checked(plan), plan.checked_noise if plan.checked_noise is not None else noise, checked)


def _uncompressed(table: SensitivityTable, names: set[str]) -> SensitivityTable:
    """The table with only the unclustered option left for the named layers."""
    return replace(table, layers=[replace(layer, options=[layer.option(None)]) if layer.name in names else layer
                                  for layer in table.layers])


def plan_spec(table: SensitivityTable, plan: Plan, init: str = "kmeans++") -> ClusteringSpec:
    """The clustering spec `cluster` consumes: one entry per clustered layer (none: the plan clusters
    nothing), and the fine-tuning epochs that reproduce the plan's drop (0: zero-shot)."""
    per_channel = {layer.name: layer.per_channel for layer in table.layers}
    layers = tuple(LayerClustering(name=name, clusters=o.clusters or 0, init=init, per_channel=per_channel[name])
                   for name, o in plan.clustered().items())  # clustered(): every count is set
    epochs = plan.epochs if layers else 0
    return ClusteringSpec(layers, plan.decode_budget, epochs, table.learning_rate if epochs else None)



def validation_noise(table: SensitivityTable) -> float:
    """The standard error of one validation score, in the table's drop unit (pp of accuracy, dB of SNR)."""
    return table.task.noise(table.control_accuracy, table.validation_samples)


def task_named(name: object) -> Task:
    """The task a record names; ValueError for an unknown one (records are checked as malformed)."""
    if not isinstance(name, str):
        raise ValueError(f"task {name!r}")
    try:
        return get_task(name)
    except InvalidValue:
        raise ValueError(f"task {name!r}") from None


def check_counts(counts: Iterable[int]) -> tuple[int, ...]:
    """The cluster counts sorted and deduplicated; InvalidValue("cluster_counts") outside 2–2^MAX_BITWIDTH."""
    checked = tuple(sorted({int(c) for c in counts}))
    bad = [c for c in checked if not 2 <= c <= 2 ** MAX_BITWIDTH]
    if not checked or bad:
        raise InvalidValue(f"cluster counts must be 2–{2 ** MAX_BITWIDTH}" + (f", got {bad[0]}" if bad else ""),
                           "cluster_counts", "e.g. 2,4,8,16,32,64")
    return checked
