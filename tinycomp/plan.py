"""Mixed-bitwidth clustering plans: per-layer sensitivity, exact byte costs, and a budgeted choice.

`sensitivity` clusters one layer at a time (TFMOT, as `cluster` does; Conv2D per channel by
default) for each cluster count, fine-tunes briefly, and measures the accuracy on a validation
split held out from the *training* data (the test set stays for the final measurement). The
reference is the given model on that split; a "control" run fine-tunes the unclustered model the
same way, so each layer's drop is the cost of clustering alone and the effect of fine-tuning is
one separate number.

Byte costs are measured, not estimated: the model is quantized to int8 once, and for each layer
and index bitwidth its weight tensor is filled with synthetic values (2^bits per value table) and
LUT-compressed with tflite-micro. The difference to the int8 file is what compressing that layer
costs or saves in the real file: packed indices, value tables, and the DECODE operator with its
output tensor (which repeats the per-channel quantization parameters).

`choose_plan` is a multiple-choice knapsack solved exactly by merging per-layer Pareto fronts
(bytes, drop). It assumes per-layer drops add up, which holds roughly for small drops, so
`checked_plan` measures the chosen layers clustered together and chooses again when that is over
the accuracy budget; the final word is the real chain's (cluster → quantize → find-tensors →
compress → eval in TFLM). `choose_plan_within_ram` adds the TFLM arena, measured on synthetic
files: LUT decoding puts decoded weights in the arena.
Measured drops are smoothed before the choice: fewer clusters never count as better than more
(an isotonic fit, which averages the noise of single runs), and a drop below zero (clustering
measured as helping) counts as zero.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from tinycomp.errors import InterpreterError, ModelError, TinycompError, UsageError
from tinycomp.find_tensors import bits_for, match_layer, quantization_layout, weight_tensors
from tinycomp.specs import MAX_BITWIDTH, ClusteringSpec, LayerClustering, PerChannel

DEFAULT_CLUSTER_COUNTS = (2, 4, 8, 16, 32, 64)
DEFAULT_VALIDATION_SPLIT = 0.2
LUT_HEADER_BYTES = 16  # tflite-micro's DCM header in every ancillary (value table) tensor

# on_step(done, total, what) after each measured candidate
StepCallback = Callable[[int, int, str], None]


class NothingFits(TinycompError):
    """No combination of cluster counts meets the budget."""


@dataclass
class Option:
    """One choice for one layer: a cluster count (None: leave the layer unclustered)."""

    clusters: int | None
    bits: int  # index bitwidth; 8 for an unclustered int8 tensor
    bytes: int  # what the layer costs in the compressed .tflite (indices, tables, DECODE op and tensors)
    ideal_bytes: int  # numel × bits / 8 + value tables (numel for unclustered)
    drop_pp: float = 0.0  # counted accuracy drop (conservative, see module docstring)
    measured_pp: float | None = None  # measured drop vs the fine-tuned control
    accuracy: float | None = None  # validation accuracy of the one-layer-clustered model


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

    @property
    def fixed_bytes(self) -> int:
        """Bytes of the int8 file that no choice changes (biases, quantization, operators, other weights)."""
        return self.int8_bytes - sum(layer.option(None).bytes for layer in self.layers)

    @property
    def fine_tune_gain_pp(self) -> float:
        return 100.0 * (self.control_accuracy - self.reference_accuracy)

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["fixed_bytes"] = self.fixed_bytes
        payload["fine_tune_gain_pp"] = self.fine_tune_gain_pp
        return payload

    @classmethod
    def from_json(cls, payload: dict) -> "SensitivityTable":
        """The table `to_json` wrote (derived keys are recomputed); KeyError/TypeError/ValueError if malformed."""
        fields = {k: v for k, v in payload.items() if k not in ("fixed_bytes", "fine_tune_gain_pp", "layers")}
        layers = [LayerSensitivity(**{**layer, "options": [Option(**o) for o in layer["options"]]})
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
    predicted_drop_pp: float  # vs the given model: Σ counted drops − credited fine-tuning gain
    sum_drop_pp: float  # Σ counted per-layer drops
    credit_pp: float  # fine-tuning gain counted against the drops
    ideal_bytes: int  # Σ ideal bytes of the eligible layers
    objective: str
    budget: float | int
    exact_bytes: int | None = None  # synthetic compression of the whole plan at once (see plan_bytes_exact)
    arena_bytes: int | None = None  # TFLM arena of that file (see choose_plan_within_ram)
    checked_drop_pp: float | None = None  # all its layers clustered at once, fine-tuned, measured (see checked_plan)
    uncompressed_for_ram: list[str] = field(default_factory=list)  # layers left out to meet --ram-budget

    def clustered(self) -> dict[str, Option]:
        return {name: o for name, o in self.choices.items() if o.clusters is not None}

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the choice (pure, no TensorFlow)

def counted_drops(options: list[Option]) -> None:
    """Set each option's drop_pp from measured_pp: the isotonic (pool-adjacent-violators) fit that
    never has fewer clusters doing better than more, then clipped at 0.

    Single measurements are noisy (±1 pp on 800 validation images); pooling violators averages
    that noise instead of letting one unlucky run at a high count raise every lower count.
    """
    clustered = sorted((o for o in options if o.clusters is not None), key=lambda o: -o.clusters)
    blocks: list[list] = []  # [mean, size]; means must not decrease from many clusters to few
    for o in clustered:
        blocks.append([o.measured_pp if o.measured_pp is not None else 0.0, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    fitted = [mean for mean, size in blocks for _ in range(size)]
    for o, value in zip(clustered, fitted):
        o.drop_pp = max(0.0, value)
    for o in options:
        if o.clusters is None:
            o.drop_pp = 0.0


def _pareto(points: list[tuple[int, float, tuple]]) -> list[tuple[int, float, tuple]]:
    """Keep the (bytes, drop, choice) points no other point beats on both bytes and drop."""
    points.sort(key=lambda p: (p[0], p[1]))
    front, best = [], math.inf
    for p in points:
        if p[1] < best - 1e-12:
            front.append(p)
            best = p[1]
    return front


def pareto_front(table: SensitivityTable) -> list[tuple[int, float, tuple]]:
    """All Pareto-optimal (layer bytes, Σ drop, option per layer) combinations, merged layer by layer."""
    front = [(0, 0.0, ())]
    for layer in table.layers:
        merged = [(b + o.bytes, d + o.drop_pp, choice + (o,)) for b, d, choice in front for o in layer.options]
        front = _pareto(merged)
    return front


def choose_plan(table: SensitivityTable, max_drop_pp: float | None = None, target_bytes: int | None = None,
                credit_fine_tuning: bool = True) -> Plan:
    """Fewest predicted bytes with the predicted drop ≤ max_drop_pp, or (with target_bytes) the
    smallest predicted drop with predicted bytes ≤ target_bytes.

    The predicted drop is against the given model: Σ per-layer drops (each measured against the
    fine-tuned control) minus the control's gain over the given model, since `cluster`
    fine-tunes too. A gain is credited only with credit_fine_tuning; a loss always counts.
    """
    if (max_drop_pp is None) == (target_bytes is None):
        raise UsageError("give exactly one of --max-accuracy-drop and --target-bytes", "plan",
                         "e.g. --max-accuracy-drop 0.5")
    if not table.layers:
        raise NothingFits("no layer to plan", "plan", "the model has no clusterable layer")
    gain = table.fine_tune_gain_pp
    credit = gain if credit_fine_tuning else min(gain, 0.0)
    fixed = table.fixed_bytes + table.decode_overhead
    front = [p for p in pareto_front(table) if any(o.clusters is not None for o in p[2])]
    if max_drop_pp is not None:
        fits = [p for p in front if p[1] - credit <= max_drop_pp + 1e-9]
        if not fits:
            cheapest = min(front, key=lambda p: p[1]) if front else None
            least = f"{cheapest[1] - credit:+.2f} pp" if cheapest else "n/a"
            raise NothingFits(f"no layer can be clustered within an accuracy drop of {max_drop_pp:g} pp "
                              f"(the least harmful single choice predicts {least})", "--max-accuracy-drop",
                              "allow a larger drop, add larger cluster counts (--clusters), or fine-tune longer (--epochs)")
        best = min(fits, key=lambda p: (p[0], p[1]))
        objective, budget = "min-bytes", max_drop_pp
    else:
        fits = [p for p in front if p[0] + fixed <= target_bytes]
        if not fits:
            smallest = min(p[0] for p in front) + fixed if front else table.int8_bytes
            raise NothingFits(f"no plan fits in {target_bytes:,} bytes: the smallest predicted is {smallest:,} bytes",
                              "--target-bytes", "raise the target or add smaller cluster counts (--clusters 2,4,...)")
        best = min(fits, key=lambda p: (p[1], p[0]))
        objective, budget = "min-drop", target_bytes
    choices = {layer.name: option for layer, option in zip(table.layers, best[2])}
    return Plan(choices, best[0] + fixed, best[1] - credit, best[1], credit,
                sum(o.ideal_bytes for o in choices.values()), objective, budget)


# Arena bytes of the plan's file for each given set of compressed layers (in the order given).
ArenasOf = Callable[[list[frozenset]], list[int]]


def choose_plan_within_ram(table: SensitivityTable, ram_budget: int, arenas_of: ArenasOf,
                           max_drop_pp: float | None = None, target_bytes: int | None = None,
                           credit_fine_tuning: bool = True) -> Plan:
    """`choose_plan`, keeping the plan's measured TFLM arena within ram_budget bytes.

    LUT decoding puts a compressed layer's decoded int8 weights in the arena while its consumer
    runs, so the arena depends on which layers are compressed, not on their bitwidths. A layer
    whose decoding alone exceeds the budget is never compressed. If the chosen plan's arena still
    does, the compressed layer with the largest single-layer arena is left uncompressed too and
    the choice is made again: greedy (decoded tensors of different layers can share arena), but
    the arena of the returned plan is always measured.
    """
    names = [layer.name for layer in table.layers if len(layer.options) > 1]
    if not names:
        raise NothingFits("no layer to plan", "plan", "the model has no clusterable layer")
    uncompressed, *single = arenas_of([frozenset()] + [frozenset([n]) for n in names])
    if uncompressed > ram_budget:
        raise NothingFits(f"the model needs {uncompressed:,} arena bytes with no layer compressed, more than "
                          f"the RAM budget of {ram_budget:,}", "--ram-budget",
                          "raise the RAM budget or make the model's activations smaller")
    alone = dict(zip(names, single))
    kept = {n for n in names if alone[n] > ram_budget}
    while True:
        if len(kept) == len(names):
            least = min(names, key=alone.get)
            raise NothingFits(f"no layer can be compressed within the RAM budget of {ram_budget:,} bytes: "
                              f"decoding even {least} needs {alone[least]:,} arena bytes", "--ram-budget",
                              "raise the RAM budget (LUT decoding costs arena), or quantize without compressing")
        try:
            plan = choose_plan(_uncompressed(table, kept), max_drop_pp, target_bytes, credit_fine_tuning)
        except NothingFits as error:
            if not kept:
                raise
            raise NothingFits(f"{error.what}, with {', '.join(sorted(kept))} left uncompressed to keep the arena "
                              f"within {ram_budget:,} bytes", error.where, f"{error.hint}, or raise --ram-budget") from None
        [arena] = arenas_of([frozenset(plan.clustered())])
        if arena <= ram_budget:
            plan.arena_bytes, plan.uncompressed_for_ram = arena, sorted(kept)
            return plan
        kept.add(max(plan.clustered(), key=alone.get))


def checked_plan(choose: Callable[[float | None], Plan], measure_drop_pp: Callable[[Plan], float],
                 max_drop_pp: float | None, noise_pp: float = 0.0, attempts: int = 3) -> tuple[Plan, list[Plan]]:
    """The plan `choose(budget)` makes, checked by measuring its drop with all its layers clustered
    at once (`measure_drop_pp`), since per-layer drops need not add up.

    Under an accuracy budget, a plan whose measured drop exceeds it by more than `noise_pp` (the
    noise of one validation measurement) is chosen again under the budget lowered by the
    prediction's shortfall, up to `attempts` plans. Returns the plan to use (the smallest whose
    measured drop is within budget + noise, else the least harmful) and every plan tried.
    """
    plan = choose(max_drop_pp)
    plan.checked_drop_pp = measure_drop_pp(plan)
    tried = [plan]
    if max_drop_pp is None:
        return plan, tried
    budget = max_drop_pp
    while plan.checked_drop_pp > max_drop_pp + noise_pp and len(tried) < attempts:
        budget -= plan.checked_drop_pp - plan.predicted_drop_pp  # below the last prediction: another plan
        try:
            plan = choose(budget)
        except NothingFits:
            break
        plan.checked_drop_pp = measure_drop_pp(plan)
        tried.append(plan)
    within = [p for p in tried if p.checked_drop_pp <= max_drop_pp + noise_pp]
    if within:
        return min(within, key=lambda p: (p.predicted_bytes, p.checked_drop_pp)), tried
    return min(tried, key=lambda p: p.checked_drop_pp), tried


def _uncompressed(table: SensitivityTable, names: set[str]) -> SensitivityTable:
    """The table with only the unclustered option left for the named layers."""
    return replace(table, layers=[replace(layer, options=[layer.option(None)]) if layer.name in names else layer
                                  for layer in table.layers])


def plan_spec(table: SensitivityTable, plan: Plan, init: str = "kmeans++") -> ClusteringSpec:
    """The clustering spec `cluster` consumes: one entry per clustered layer."""
    per_channel = {layer.name: layer.per_channel for layer in table.layers}
    layers = tuple(LayerClustering(name=name, clusters=o.clusters, init=init, per_channel=per_channel[name])
                   for name, o in plan.clustered().items())
    if not layers:
        raise NothingFits("the plan clusters no layer", "plan", "allow a larger accuracy drop or byte target")
    return ClusteringSpec(layers)


# ---------------------------------------------------------------- byte costs (tflite-micro, no TensorFlow)

def _synthetic(array: np.ndarray, layout, bits: int, seed: int) -> np.ndarray:
    """`array` refilled with exactly min(2^bits, slice size) distinct values in every value-table slice.

    Values and their order are random (seeded per tensor): identical fills of two tensors would
    share one buffer after tflite-micro's deduplication, which real weights never do.
    """
    rng = np.random.default_rng(seed)
    values = 2 ** bits
    if isinstance(layout, PerChannel):  # one value table per slice along the channel axis
        moved = np.moveaxis(np.empty_like(array), layout.axis, 0)
    else:
        moved = array.reshape(1, -1).copy()
    per = moved[0].size
    for channel in moved:
        table = rng.choice(np.arange(-128, 128), size=min(values, per), replace=False)
        indices = np.concatenate([np.arange(len(table)), rng.integers(0, len(table), per - len(table))])
        channel[...] = table[rng.permutation(indices)].reshape(channel.shape)
    if isinstance(layout, PerChannel):
        return np.ascontiguousarray(np.moveaxis(moved, 0, layout.axis)).astype(array.dtype)
    return moved.reshape(array.shape).astype(array.dtype)


def _compressed_size(int8_bytes: bytes, fills: dict[tuple[int, int], tuple], strip: bool = False) -> int:
    """Size of the int8 model with the given tensors refilled and LUT-compressed (and stripped)."""
    return len(_compressed_model(int8_bytes, fills, strip))


def _compressed_model(int8_bytes: bytes, fills: dict[tuple[int, int], tuple], strip: bool = False) -> bytes:
    """The int8 model with the given tensors refilled and LUT-compressed (and stripped)."""
    from tflite_micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import model_editor
    from tflite_micro.tensorflow.lite.micro.compression import spec as tflm_spec

    model = model_editor.read(int8_bytes)
    specs = []
    for (s, t), (layout, bits) in fills.items():
        tensor = model.subgraphs[s].tensors[t]
        tensor.array = _synthetic(tensor.array, layout, bits, seed=1000 * s + t)
        mode = tflm_spec.PerChannel(axis=layout.axis) if isinstance(layout, PerChannel) else tflm_spec.PerTensor()
        specs.append(tflm_spec.Tensor(s, t, [tflm_spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        compressed = bytes(compression.compress(bytes(model.build()), specs)) if specs else int8_bytes
    return _final(compressed, strip)


def _final(model_bytes: bytes, strip: bool) -> bytes:
    from tinycomp.strip import strip_model

    return strip_model(model_bytes).data if strip else model_bytes


def _final_size(model_bytes: bytes, strip: bool) -> int:
    return len(_final(model_bytes, strip))


@dataclass
class WeightInfo:
    """A layer's int8 weight tensor in the .tflite."""

    layer: str
    subgraph: int
    tensor: int
    weights: int
    bytes: int
    channels: int
    layout: object  # PerTensor | PerChannel


def weight_info(int8_bytes: bytes, layers: list[str], source: str = "int8 model") -> dict[str, WeightInfo]:
    """The int8 weight tensor of each named layer."""
    from tinycomp.tflite_model import parse_tflite

    weights = weight_tensors(parse_tflite(int8_bytes, source))
    found = {}
    for name in layers:
        w = match_layer(weights, name, source)
        layout = quantization_layout(w.tensor)
        channels = int(w.array.shape[layout.axis]) if isinstance(layout, PerChannel) else 1
        found[name] = WeightInfo(name, w.subgraph, w.index, int(w.array.size), len(w.tensor.buffer.data),
                                 channels, layout)
    return found


def ideal_bytes(weights: int, channels: int, bits: int, values: int | None = None) -> int:
    """Packed indices plus value tables (int8 values) of a LUT tensor: the bound no encoder beats."""
    return math.ceil(weights * bits / 8) + channels * (values if values is not None else 2 ** bits)


def layer_byte_costs(int8_bytes: bytes, infos: dict[str, WeightInfo], bits: dict[str, list[int]],
                     strip: bool = False) -> tuple[dict, int]:
    """({layer: {bits: bytes the layer costs in the compressed file}}, once-only DECODE overhead).

    Each cost is the int8 file's size change when only that layer is compressed, plus its int8
    weight bytes; the part every single-layer measurement pays once (the DECODE operator code and
    alignment) is measured from one two-layer compression and reported separately. With `strip`
    every size is that of the stripped file (`compress --strip`).
    """
    base = _final_size(int8_bytes, strip)
    costs: dict[str, dict[int, int]] = {}
    for name, info in infos.items():
        costs[name] = {}
        for b in bits.get(name, []):
            size = _compressed_size(int8_bytes, {(info.subgraph, info.tensor): (info.layout, b)}, strip)
            costs[name][b] = info.bytes + size - base
    overhead = 0
    measured = [(name, min(c)) for name, c in costs.items() if c]
    if len(measured) >= 2:
        (a, ba), (b, bb) = measured[:2]
        ia, ib = infos[a], infos[b]
        pair = _compressed_size(int8_bytes, {(ia.subgraph, ia.tensor): (ia.layout, ba),
                                             (ib.subgraph, ib.tensor): (ib.layout, bb)}, strip)
        overhead = max(0, (costs[a][ba] - ia.bytes) + (costs[b][bb] - ib.bytes) - (pair - base))
    elif measured:  # one layer: cannot separate the shared part; leave it in the layer's cost
        overhead = 0
    for name, c in costs.items():
        for b in c:
            c[b] -= overhead
    return costs, overhead


def plan_bytes_exact(int8_bytes: bytes, infos: dict[str, WeightInfo], plan: Plan, strip: bool = False) -> int:
    """The plan's size measured by compressing all its layers at once (synthetic values)."""
    fills = {(infos[name].subgraph, infos[name].tensor): (infos[name].layout, o.bits)
             for name, o in plan.clustered().items()}
    return _compressed_size(int8_bytes, fills, strip)


def arena_measurer(int8_bytes: bytes, infos: dict[str, WeightInfo], table: SensitivityTable,
                   strip: bool = False) -> ArenasOf:
    """ArenasOf for this model: each set of layers is LUT-compressed with synthetic values (at its
    smallest measured bitwidth: the decoded tensors, not the indices, take arena) and its arena
    measured in TFLM worker processes; results are cached per set."""
    from tinycomp.tflm import arena_of, default_jobs, run_parallel

    bits = {layer.name: min(o.bits for o in layer.options if o.clusters is not None)
            for layer in table.layers if len(layer.options) > 1}
    cache: dict[frozenset, int] = {}

    def model_for(names: frozenset) -> bytes:
        fills = {(infos[n].subgraph, infos[n].tensor): (infos[n].layout, bits[n]) for n in names}
        return _compressed_model(int8_bytes, fills, strip)

    def arenas_of(sets: list[frozenset]) -> list[int]:
        missing = [s for s in dict.fromkeys(sets) if s not in cache]
        if missing:
            measured = run_parallel(arena_of, [(model_for(s),) for s in missing], default_jobs(),
                                    source="the plan's synthetic model")
            if None in measured:
                raise InterpreterError("TFLM did not report its arena size", "the plan's synthetic model",
                                       "plan without --ram-budget")
            cache.update(zip(missing, measured))
        return [cache[s] for s in sets]

    return arenas_of


# ---------------------------------------------------------------- sensitivity (TensorFlow)

def eligible_layers(model, layers: list[str] | None, counts: tuple[int, ...], per_channel_conv: bool) -> list[str]:
    """The named layers (or every clusterable one) with at least one usable cluster count."""
    from tinycomp.cluster import clusterable_layers, validate_spec

    names = list(layers) if layers else clusterable_layers(model)
    if layers:
        validate_spec(model, ClusteringSpec(tuple(LayerClustering(name=n, clusters=2) for n in names)))
    usable = [n for n in names if _usable_counts(model, n, counts, per_channel_conv)]
    if not usable:
        raise ModelError(f"no layer has more weights than {min(counts)} clusters", "plan",
                         "use smaller --clusters counts")
    return usable


def _is_conv2d(model, name: str) -> bool:
    from tinycomp.cluster import _is_conv2d as is_conv2d

    return is_conv2d(model.get_layer(name))


def _usable_counts(model, name: str, counts, per_channel_conv: bool) -> list[int]:
    from tinycomp.models import kernel_of

    kernel = kernel_of(model.get_layer(name))
    size = int(np.prod(kernel.shape))
    per = size // int(kernel.shape[-1]) if (per_channel_conv and _is_conv2d(model, name)) else size
    return [c for c in counts if c < per and bits_for(c) <= MAX_BITWIDTH]


def check_counts(counts) -> tuple[int, ...]:
    counts = tuple(sorted(set(int(c) for c in counts)))
    bad = [c for c in counts if not 2 <= c <= 2 ** MAX_BITWIDTH]
    if not counts or bad:
        raise UsageError(f"cluster counts must be 2–{2 ** MAX_BITWIDTH}" + (f", got {bad[0]}" if bad else ""),
                         "--clusters", "e.g. --clusters 2,4,8,16,32,64")
    return counts


def split_validation(data, validation_split: float):
    """(fit data, x_val, y_val): the last `validation_split` of the training rows are held out."""
    from tinycomp.data import Dataset

    if not 0 < validation_split < 1:
        raise UsageError(f"validation split must be in (0, 1), got {validation_split}", "--validation-split",
                         "use e.g. 0.2")
    n = len(data.x_train)
    held = int(round(n * validation_split))
    if held < 1 or n - held < 1:
        from tinycomp.errors import DataError

        raise DataError(f"{n} training rows cannot be split {1 - validation_split:g}/{validation_split:g}",
                        data.name, "use more data or another --validation-split")
    fit_data = Dataset(data.name, data.x_train[:n - held], data.y_train[:n - held],
                       data.x_train[n - held:], data.y_train[n - held:])
    return fit_data, data.x_train[n - held:], data.y_train[n - held:]


def _run(model, spec: ClusteringSpec | None, fit_data, x_val, y_val, epochs: int, batch_size: int, seed: int) -> float:
    """Validation accuracy of `model` with `spec`'s layers clustered (None: unclustered), fine-tuned."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tinycomp.cluster import FINE_TUNE_LEARNING_RATE, wrap_layers
    from tinycomp.models import compile_for_training, evaluate_keras, set_seed
    from tinycomp.train import fit

    set_seed(seed)
    if spec is None:
        candidate = tf_keras.models.clone_model(model)
        candidate.set_weights(model.get_weights())
    else:
        candidate = wrap_layers(model, spec)
    if epochs > 0:
        compile_for_training(candidate, FINE_TUNE_LEARNING_RATE)
        fit(candidate, fit_data, epochs, batch_size, 0.0)
    if spec is not None:
        candidate = tfmot.clustering.keras.strip_clustering(candidate)
    return evaluate_keras(candidate, x_val, y_val)


def joint_drop_pp(model, data, table: SensitivityTable, plan: Plan, batch_size: int, validation_split: float,
                  init: str = "kmeans++") -> float:
    """The plan's accuracy drop vs the given model with all its layers clustered at once and
    fine-tuned as each candidate was (same epochs, seed and validation split)."""
    fit_data, x_val, y_val = split_validation(data, validation_split)
    accuracy = _run(model, plan_spec(table, plan, init), fit_data, x_val, y_val, table.epochs, batch_size, table.seed)
    return 100.0 * (table.reference_accuracy - accuracy)


def validation_noise_pp(table: SensitivityTable) -> float:
    """The standard error of one validation accuracy, in percentage points."""
    p = table.control_accuracy
    return 100.0 * (p * (1 - p) / max(table.validation_samples, 1)) ** 0.5


def int8_for_costs(model, data, names: list[str], seed: int, calibration_count: int = 100,
                   per_tensor_dense: bool = False, io: str = "uint8") -> tuple[bytes, dict[str, WeightInfo]]:
    """The int8 model byte costs are measured on (as `quantize` makes it, byte-identical for the
    same model, data and seed) and the named layers' weight tensors in it."""
    from tinycomp.convert import quantize
    from tinycomp.data import calibration_samples

    int8 = quantize(model, method="int8", io=io, calibration=calibration_samples(data, calibration_count, seed),
                    per_tensor_dense=per_tensor_dense)
    return int8, weight_info(int8, names)


def sensitivity(model, data, layers: list[str] | None = None, cluster_counts=DEFAULT_CLUSTER_COUNTS,
                per_channel_conv: bool = True, epochs: int = 1, batch_size: int = 128,
                validation_split: float = DEFAULT_VALIDATION_SPLIT, seed: int = 0, calibration_count: int = 100,
                init: str = "kmeans++", on_step: StepCallback | None = None, per_tensor_dense: bool = False,
                strip: bool = False, io: str = "uint8") -> tuple[SensitivityTable, bytes, dict]:
    """Measure every eligible layer at every usable cluster count; returns the table, the int8
    model bytes the costs were measured on, and the layers' WeightInfo.

    `per_tensor_dense`, `io` and `strip` make the byte costs those of `quantize --per-tensor-dense
    --io IO` and `compress --strip`: pass what the real chain will use.

    Each candidate clusters one layer of `model` (left unchanged), fine-tunes `epochs` on the
    training rows before the validation split, strips the wrappers and measures the validation
    accuracy. The same seed is set before every run, so the table is reproducible.
    """
    from tinycomp.data import check_fits_model
    from tinycomp.models import evaluate_keras

    counts = check_counts(cluster_counts)
    if epochs < 0:
        raise UsageError(f"epochs must be 0 or more, got {epochs}", "--epochs", "use e.g. --epochs 1")
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), "model input/output")
    names = eligible_layers(model, layers, counts, per_channel_conv)
    fit_data, x_val, y_val = split_validation(data, validation_split)
    start = time.perf_counter()

    int8, infos = int8_for_costs(model, data, names, seed, calibration_count, per_tensor_dense, io)
    usable = {n: _usable_counts(model, n, counts, per_channel_conv) for n in names}
    costs, overhead = layer_byte_costs(int8, infos, {n: sorted({bits_for(c) for c in cs}) for n, cs in usable.items()},
                                       strip)

    total = 1 + sum(len(cs) for cs in usable.values())
    done = 0
    reference = evaluate_keras(model, x_val, y_val)
    control = _run(model, None, fit_data, x_val, y_val, epochs, batch_size, seed) if epochs > 0 else reference
    done += 1
    if on_step:
        on_step(done, total, f"control (fine-tuned, unclustered): {100 * control:.2f}%")
    table_layers = []
    for name in names:
        info = infos[name]
        per_channel = per_channel_conv and _is_conv2d(model, name)
        options = [Option(None, 8 * info.bytes // max(info.weights, 1), info.bytes, info.bytes)]
        for c in usable[name]:
            spec = ClusteringSpec((LayerClustering(name=name, clusters=c, init=init, per_channel=per_channel),))
            accuracy = _run(model, spec, fit_data, x_val, y_val, epochs, batch_size, seed)
            b = bits_for(c)
            options.append(Option(c, b, costs[name][b], ideal_bytes(info.weights, info.channels, b, c),
                                   measured_pp=100.0 * (control - accuracy), accuracy=accuracy))
            done += 1
            if on_step:
                on_step(done, total, f"{name} → {c} clusters: {100 * accuracy:.2f}%")
        counted_drops(options)
        table_layers.append(LayerSensitivity(name, type(model.get_layer(name)).__name__, info.weights, info.channels,
                                             per_channel, options))
    table = SensitivityTable(table_layers, _final_size(int8, strip), overhead, reference, control, len(x_val), epochs, seed,
                             time.perf_counter() - start)
    return table, int8, infos
