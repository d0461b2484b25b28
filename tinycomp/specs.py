"""Clustering, compression, palettization and pruning specs: strict dataclasses, YAML parse and dump.

The parsers reject unknown keys and check types and ranges, reporting the key path
(`tensors[1].compression[0].lut.index_bitwidth`) of the first problem. The compression spec
is written in tflite-micro's current format (`lut:`, and `huffman:` and `pruning:`, which take no
parameters, as tflite-micro's own parser reads them); the tutorial's older form
(`compression: {lut: {index_bitwidth: 4}}`, no layout) is accepted and upgraded later from
the model's quantization (see `compress.resolve_layouts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from tinycomp.errors import SpecError

CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
MIN_BITWIDTH, MAX_BITWIDTH = 1, 7
MAX_SPEC_EPOCHS = 10_000

CLUSTERING_EXAMPLE = """\
# The TFLM tutorial's recipe: 16 shared weights in conv2d_1 and dense.
init: kmeans++          # kmeans++ | linear | density | random
epochs: 2               # optional: fine-tuning epochs (0: none); `cluster --epochs` overrides it
# validation: {split: 0.2, seed: 0, training_rows: 60000}  # plan writes it: fine-tune without its validation rows
layers:
  - name: conv2d_1
    clusters: 16
    per_channel: false  # true: one set of centroids per output channel (Conv2D)
    # preserve_sparsity: true  # keep the zeros (default: yes when >= 1% of the kernel is zero, e.g. after prune)
  - name: dense
    clusters: 16
"""

COMPRESSION_EXAMPLE = """\
tensors:
  - subgraph: 0
    tensor: 7
    compression:
      - lut:
          index_bitwidth: 4
          per_channel:
            axis: 0
  - subgraph: 0
    tensor: 9
    compression:
      - lut:
          index_bitwidth: 2
          per_tensor:
  - subgraph: 0
    tensor: 11
    compression:
      - huffman:     # TFLM's HUFFMAN decoder: int8 or int16 tensors
  - subgraph: 0
    tensor: 13
    compression:
      - pruning:     # TFLM's PRUNE decoder: a bitmask and the values that are not the zero point
"""

LEGACY_COMPRESSION_EXAMPLE = """\
tensors:
  - subgraph: 0
    tensor: 7
    compression:
      lut:
        index_bitwidth: 4
"""


# ---------------------------------------------------------------- strict reading helpers

class _Node:
    """A YAML value with its key path, for precise error messages."""

    def __init__(self, value: Any, path: str, source: str):
        self.value, self.path, self.source = value, path, source

    def fail(self, what: str, hint: str | None = None) -> SpecError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return SpecError(what, where, hint)

    def mapping(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, _Node]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping with keys {', '.join(allowed)}, got {_kind(self.value)}")
        for key in self.value:
            if key not in allowed:
                raise self.child(key).fail(f"unknown key {key!r}", f"allowed keys here: {', '.join(allowed)}")
        for key in required:
            if key not in self.value:
                raise self.fail(f"missing key {key!r}", f"add `{key}:`")
        return {k: self.child(k) for k in self.value}

    def child(self, key: str | int) -> _Node:
        value = self.value[key] if key in (self.value if isinstance(self.value, dict) else range(len(self.value))) else None
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else str(key))
        return _Node(value, path, self.source)

    def items(self) -> list[_Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_kind(self.value)}")
        return [self.child(i) for i in range(len(self.value))]

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        v = self.value
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"expected an integer, got {_kind(v)}")
        if (low is not None and v < low) or (high is not None and v > high):
            bounds = f"in {low}–{high}" if high is not None else f">= {low}"
            raise self.fail(f"{v} is out of range", f"use a value {bounds}")
        return v

    def positive_number(self) -> float:
        v = self.value
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise self.fail(f"expected a number above 0, got {_kind(v)}", "e.g. 0.0001")
        return float(v)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_kind(self.value)}")
        return self.value

    def string(self, choices: tuple[str, ...] | None = None) -> str:
        v = self.value
        if not isinstance(v, str) or not v:
            raise self.fail(f"expected a non-empty string, got {_kind(v)}")
        if choices and v not in choices:
            raise self.fail(f"{v!r} is not a valid choice", f"choose one of {', '.join(choices)}")
        return v


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    names: dict[type, str] = {dict: "a mapping", list: "a list"}
    return names.get(type(value), type(value).__name__)


def _load_yaml(text: str, source: str) -> _Node:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"YAML syntax error: {problem}", where, "fix the YAML syntax") from e
    if data is None:
        raise SpecError("spec is empty", source, "see `tinycomp --help` of the command for an example")
    return _Node(data, "", source)


# ---------------------------------------------------------------- clustering spec

@dataclass(frozen=True)
class LayerClustering:
    """How to cluster one layer's kernel."""

    name: str
    clusters: int
    init: str = "kmeans++"
    per_channel: bool = False
    # keep the kernel's zeros (one centroid pinned at 0); None: `cluster` decides from the weights (a pruned kernel: yes)
    preserve_sparsity: bool | None = None


@dataclass(frozen=True)
class PlanValidation:
    """The validation rows a plan's check held out (`Dataset.validation_split(split, seed)`: the data's own
    validation set, else whole groups chosen by `seed`, else the last `split` of the training rows):
    `cluster` fine-tunes without them and decides fine-tuned against zero-shot on them, as the check did."""

    split: float
    seed: int
    training_rows: int  # of the data the plan was given: `cluster` checks its data has as many
    held_out_groups: tuple[str, ...] = ()  # the groups_train ids it held out (none: not groups)


@dataclass(frozen=True)
class ClusteringSpec:
    """Which layers to cluster and how (no layers: cluster nothing, e.g. a plan that found nothing within
    its budget), and optionally the fine-tuning epochs that reproduce a plan (0: none, zero-shot)."""

    layers: tuple[LayerClustering, ...]
    decode_budget: int | None = None  # bytes; `compress` slices larger decoded kernels (plan writes it)
    epochs: int | None = None  # fine-tuning epochs that reproduce a plan (0: none, zero-shot)
    learning_rate: float | None = None  # Adam's rate for those epochs (None: cluster's default)
    validation: PlanValidation | None = None  # the plan's validation rows (None: cluster's own last 10%)

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


def parse_clustering_spec(text: str, source: str = "clustering spec") -> ClusteringSpec:
    """Parse and validate a clustering spec (see CLUSTERING_EXAMPLE)."""
    top = _load_yaml(text, source).mapping(("init", "per_channel", "preserve_sparsity", "decode_budget", "epochs",
                                            "learning_rate", "validation", "layers"), ("layers",))
    init = top["init"].string(CLUSTER_INITS) if "init" in top else "kmeans++"
    per_channel = top["per_channel"].boolean() if "per_channel" in top else False
    sparsity = top["preserve_sparsity"].boolean() if "preserve_sparsity" in top else None
    layers = []
    for node in top["layers"].items():
        keys = node.mapping(("name", "clusters", "init", "per_channel", "preserve_sparsity"), ("name", "clusters"))
        layers.append(LayerClustering(
            name=keys["name"].string(),
            clusters=keys["clusters"].integer(2, 256),
            init=keys["init"].string(CLUSTER_INITS) if "init" in keys else init,
            per_channel=keys["per_channel"].boolean() if "per_channel" in keys else per_channel,
            preserve_sparsity=keys["preserve_sparsity"].boolean() if "preserve_sparsity" in keys else sparsity,
        ))
    _reject_duplicates([layer.name for layer in layers], top["layers"], "layer")
    epochs = top["epochs"].integer(0, MAX_SPEC_EPOCHS) if "epochs" in top else None
    rate = top["learning_rate"].positive_number() if "learning_rate" in top else None
    validation = _plan_validation(top["validation"]) if "validation" in top else None
    return ClusteringSpec(tuple(layers), _decode_budget(top), epochs, rate, validation)


def _plan_validation(node: _Node) -> PlanValidation:
    keys = node.mapping(("split", "seed", "training_rows", "held_out_groups"), ("split", "seed", "training_rows"))
    split = keys["split"].value
    if not isinstance(split, float) or not 0 < split < 1:
        raise keys["split"].fail(f"expected a fraction between 0 and 1, got {_kind(split)}", "e.g. 0.2")
    groups = _group_ids(keys["held_out_groups"]) if "held_out_groups" in keys else ()
    return PlanValidation(split, keys["seed"].integer(0), keys["training_rows"].integer(2), groups)


def _decode_budget(top: dict[str, _Node]) -> int | None:
    """The optional top-level `decode_budget` (bytes) both specs carry from `plan` to `compress`."""
    return top["decode_budget"].integer(1) if "decode_budget" in top else None


def _decode_budget_lines(budget: int | None) -> list[str]:
    return [f"decode_budget: {budget}"] if budget is not None else []


# What YAML allows in a stream, minus the BOM; line breaks are split off before this is applied.
_NOT_IN_COMMENT = re.compile("[^\t\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")


def _comments(text: str | None, indent: str = "") -> list[str]:
    """`text` as YAML comment lines: one per line, characters YAML forbids replaced by '?'."""
    return [f"{indent}# {_NOT_IN_COMMENT.sub('?', line)}" for line in (text or "").splitlines()]


def _yaml_string(text: str) -> str:
    """`text` as a YAML scalar that reads back as the same string: plain when safe, else double-quoted."""
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return yaml.safe_dump(text, default_style='"', allow_unicode=True, width=2 ** 31).rstrip("\n")


def dump_clustering_spec(spec: ClusteringSpec, header: str | None = None) -> str:
    """YAML text that `parse_clustering_spec` reads back to an equal spec."""
    lines = _comments(header) + _decode_budget_lines(spec.decode_budget)
    lines += [f"epochs: {spec.epochs}"] if spec.epochs is not None else []
    lines += [f"learning_rate: {spec.learning_rate!r}"] if spec.learning_rate is not None else []
    if spec.validation is not None:
        lines += ["validation:  # the rows the plan validated on: cluster fine-tunes without them and decides on them",
                  f"  split: {spec.validation.split!r}", f"  seed: {spec.validation.seed}",
                  f"  training_rows: {spec.validation.training_rows}"]
        if spec.validation.held_out_groups:
            lines += [f"  held_out_groups: {_group_list(spec.validation.held_out_groups)}"]
    lines += ["layers:" if spec.layers else "layers: []"]
    for layer in spec.layers:
        lines += [f"  - name: {_yaml_string(layer.name)}", f"    clusters: {layer.clusters}", f"    init: {layer.init}",
                  f"    per_channel: {str(layer.per_channel).lower()}"]
        if layer.preserve_sparsity is not None:
            lines.append(f"    preserve_sparsity: {str(layer.preserve_sparsity).lower()}")
    return "\n".join(lines) + "\n"


def parse_layer_options(values: tuple[str, ...], init: str = "kmeans++") -> ClusteringSpec:
    """Parse repeated `--layer NAME=CLUSTERS` options into a spec."""
    layers = []
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not name or not count.strip().isdigit():
            raise SpecError(f"cannot read --layer {value!r}", "--layer", "write it as NAME=CLUSTERS, e.g. --layer conv2d_1=16")
        clusters = int(count)
        if not 2 <= clusters <= 256:
            raise SpecError(f"{clusters} clusters is out of range", f"--layer {value}", "use 2–256 clusters")
        layers.append(LayerClustering(name=name, clusters=clusters, init=init))
    names = [layer.name for layer in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"layer {dupes[0]!r} is given twice", "--layer", "name each layer once")
    return ClusteringSpec(tuple(layers))


def _reject_duplicates(names: list[Any], node: _Node, what: str) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise node.child(i).fail(f"{what} {name} is listed twice", f"list each {what} once")
        seen.add(name)


# ---------------------------------------------------------------- compression spec

@dataclass(frozen=True)
class PerTensor:
    """One value table for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One value table per slice along `axis`."""

    axis: int


METHODS = ("lut", "huffman", "pruning")  # the spec keys; TFLM's DECODE types 0, 1 and 2


@dataclass(frozen=True)
class TensorCompression:
    """The compression of one constant tensor: `method` "lut" (with `index_bitwidth` and `layout`; layout
    None means: derive it from the model), "huffman" or "pruning" (no parameters: bitwidth 0, layout None)."""

    subgraph: int
    tensor: int
    index_bitwidth: int
    layout: PerTensor | PerChannel | None
    label: str = field(default="", compare=False)
    method: str = "lut"


@dataclass(frozen=True)
class CompressionSpec:
    """The tensors to compress; `upgraded` is True when read from the tutorial's older form."""

    tensors: tuple[TensorCompression, ...]
    upgraded: bool = field(default=False, compare=False)
    # bytes; `compress` slices larger decoded kernels. A top-level key tflite-micro's parser ignores.
    decode_budget: int | None = None

    def to_tflm(self) -> list[Any]:
        """tflite-micro's spec objects (all layouts must be resolved)."""
        from tflite_micro.tensorflow.lite.micro.compression import spec as tflm_spec

        result = []
        for t in self.tensors:
            if t.method != "lut":
                kind = tflm_spec.HuffmanCompression if t.method == "huffman" else tflm_spec.PruningCompression
                result.append(tflm_spec.Tensor(subgraph=t.subgraph, tensor=t.tensor, compression=[kind()]))
                continue
            if t.layout is None:
                raise SpecError("tensor has no layout", f"tensor {t.tensor}", "resolve layouts against the model first")
            mode = tflm_spec.PerTensor() if isinstance(t.layout, PerTensor) else tflm_spec.PerChannel(axis=t.layout.axis)
            method = tflm_spec.LookUpTableCompression(index_bitwidth=t.index_bitwidth, mode=mode)
            result.append(tflm_spec.Tensor(subgraph=t.subgraph, tensor=t.tensor, compression=[method]))
        return result


def parse_compression_spec(text: str, source: str = "compression spec") -> CompressionSpec:
    """Parse and validate a compression spec in tflite-micro's format or the tutorial's older form."""
    top = _load_yaml(text, source).mapping(("decode_budget", "calibration", "tensors"), ("tensors",))
    tensors, upgraded = [], False
    for node in top["tensors"].items():
        keys = node.mapping(("subgraph", "tensor", "compression"), ("subgraph", "tensor", "compression"))
        methods = keys["compression"]
        if isinstance(methods.value, dict):  # tutorial form: compression: {lut: {...}}
            upgraded = True
            method = methods
        else:
            items = methods.items()
            if len(items) != 1:
                raise methods.fail(f"{len(items)} compression methods given", "give exactly one: lut, huffman or pruning")
            method = items[0]
        named = method.mapping(METHODS)
        if len(named) != 1:
            raise method.fail("no compression method given" if not named else
                              f"{len(named)} compression methods given ({', '.join(named)})",
                              "give exactly one: `lut:`, `huffman:` or `pruning:`")
        name, node = next(iter(named.items()))
        subgraph, tensor = keys["subgraph"].integer(0), keys["tensor"].integer(0)
        if name != "lut":
            if node.value not in (None, {}):
                raise node.fail(f"{name} takes no parameters, got {_kind(node.value)}", f"write `{name}:` alone")
            tensors.append(TensorCompression(subgraph, tensor, 0, None, method=name))
            continue
        bitwidth, layout, was_legacy = _parse_lut(node)
        upgraded = upgraded or was_legacy
        tensors.append(TensorCompression(subgraph=subgraph, tensor=tensor, index_bitwidth=bitwidth, layout=layout))
    _reject_duplicates([(t.subgraph, t.tensor) for t in tensors], top["tensors"], "tensor (subgraph, index)")
    return CompressionSpec(tuple(tensors), upgraded, _decode_budget(top))


def _parse_lut(node: _Node) -> tuple[int, PerTensor | PerChannel | None, bool]:
    keys = node.mapping(("index_bitwidth", "per_tensor", "per_channel"), ("index_bitwidth",))
    bitwidth = keys["index_bitwidth"].integer(MIN_BITWIDTH, MAX_BITWIDTH)
    if "per_tensor" in keys and "per_channel" in keys:
        raise node.fail("per_tensor and per_channel are contradictory", "give exactly one")
    if "per_tensor" in keys:
        if keys["per_tensor"].value is not None:
            raise keys["per_tensor"].fail("per_tensor takes no value", "write `per_tensor:` alone")
        return bitwidth, PerTensor(), False
    if "per_channel" in keys:
        axis = keys["per_channel"].mapping(("axis",), ("axis",))["axis"].integer(0, 14)
        return bitwidth, PerChannel(axis), False
    return bitwidth, None, True


def dump_compression_spec(spec: CompressionSpec, header: str | None = None) -> str:
    """tflite-micro format YAML; labels become comments so upstream's parser still reads it."""
    lines = _comments(header) + _decode_budget_lines(spec.decode_budget) + ["tensors:" if spec.tensors else "tensors: []"]
    for t in spec.tensors:
        lines += _comments(t.label, "  ")
        lines += [f"  - subgraph: {t.subgraph}", f"    tensor: {t.tensor}", "    compression:"]
        if t.method != "lut":
            lines.append(f"      - {t.method}:")
            continue
        lines += ["      - lut:", f"          index_bitwidth: {t.index_bitwidth}"]
        if isinstance(t.layout, PerChannel):
            lines += ["          per_channel:", f"            axis: {t.layout.axis}"]
        elif isinstance(t.layout, PerTensor):
            lines.append("          per_tensor:")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- palettization spec

PALETTIZATION_EXAMPLE = """\
# Index bits per weight tensor: at most 2^bits int8 values per quantization channel.
calibration:                  # optional (plan writes it): with --data, never calibrate on the plan's validation rows
  training_rows: 2832         # the data's training rows (checked)
  exclude_groups: ["3", "5"]  # its held-out groups_train ids (or exclude_last_rows: N, the last N training rows)
tensors:
  - subgraph: 0
    tensor: 7
    bits: 3
    name: sequential/conv2d_1/Conv2D   # optional: checked against the model
  - subgraph: 0
    tensor: 9
    bits: 2
"""


@dataclass(frozen=True)
class TensorBits:
    """How many index bits one weight tensor is palettized to; `name`, when given, must be the tensor's."""

    subgraph: int
    tensor: int
    bits: int
    name: str | None = None
    label: str = field(default="", compare=False)


@dataclass(frozen=True)
class CalibrationExclusion:
    """The training rows `palettize --data` must not calibrate on: the plan's validation rows, as whole
    groups (`exclude_groups`: groups_train ids, as strings) or as the last `exclude_last_rows` rows, of
    data with `training_rows` training rows (checked against the data given)."""

    training_rows: int
    exclude_groups: tuple[str, ...] = ()
    exclude_last_rows: int | None = None

    def describe(self) -> str:
        """What is left out ('held-out groups 3, 5 of groups_train' or 'the last 120 of the 600 training rows')."""
        if self.exclude_last_rows is not None:
            return f"the last {self.exclude_last_rows:,} of the {self.training_rows:,} training rows"
        shown = ", ".join(self.exclude_groups[:8]) + (", …" if len(self.exclude_groups) > 8 else "")
        return f"held-out group{'s' if len(self.exclude_groups) > 1 else ''} {shown} of groups_train"


@dataclass(frozen=True)
class PalettizationSpec:
    """The weight tensors `palettize --spec` clusters and each one's bits (what `plan` writes for a .tflite)."""

    tensors: tuple[TensorBits, ...]
    decode_budget: int | None = None  # bytes; `compress` slices larger decoded kernels (plan writes it)
    calibration: CalibrationExclusion | None = None  # None: calibrate on any training rows


def parse_palettization_spec(text: str, source: str = "palettization spec") -> PalettizationSpec:
    """Parse and validate a palettization spec (see PALETTIZATION_EXAMPLE)."""
    top = _load_yaml(text, source).mapping(("decode_budget", "calibration", "tensors"), ("tensors",))
    if top["tensors"].value is None:
        raise top["tensors"].fail("no tensors listed", "list at least one tensor (`tensors: []` palettizes none), "
                                  "or run `tinycomp plan MODEL.tflite`")
    tensors = []
    for node in top["tensors"].items():
        if isinstance(node.value, dict) and "compression" in node.value:
            raise node.child("compression").fail(
                "this is a compression spec (for `tinycomp compress`), not a palettization spec",
                "give palettize the spec `tinycomp plan MODEL.tflite` writes: subgraph, tensor and bits per tensor")
        keys = node.mapping(("subgraph", "tensor", "bits", "name"), ("subgraph", "tensor", "bits"))
        tensors.append(TensorBits(subgraph=keys["subgraph"].integer(0), tensor=keys["tensor"].integer(0),
                                  bits=keys["bits"].integer(MIN_BITWIDTH, MAX_BITWIDTH),
                                  name=keys["name"].string() if "name" in keys else None))
    _reject_duplicates([(t.subgraph, t.tensor) for t in tensors], top["tensors"], "tensor (subgraph, index)")
    calibration = _calibration_exclusion(top["calibration"]) if "calibration" in top else None
    return PalettizationSpec(tuple(tensors), _decode_budget(top), calibration)


def _calibration_exclusion(node: _Node) -> CalibrationExclusion:
    """`calibration:`: training_rows and exactly one of exclude_groups (ids) or exclude_last_rows (a count)."""
    keys = node.mapping(("training_rows", "exclude_groups", "exclude_last_rows"), ("training_rows",))
    if ("exclude_groups" in keys) == ("exclude_last_rows" in keys):
        raise node.fail("give exactly one of exclude_groups or exclude_last_rows",
                        "exclude_groups: the held-out groups_train ids; exclude_last_rows: how many of the last "
                        "training rows were held out")
    rows = keys["training_rows"].integer(2)
    if "exclude_last_rows" in keys:
        return CalibrationExclusion(rows, exclude_last_rows=keys["exclude_last_rows"].integer(1, rows - 1))
    return CalibrationExclusion(rows, exclude_groups=_group_ids(keys["exclude_groups"]))


def _group_ids(node: _Node) -> tuple[str, ...]:
    """A non-empty list of distinct groups_train ids (integers or non-empty strings), as strings."""
    items = node.items()
    if not items:
        raise node.fail("no groups listed", "list the held-out groups_train ids")
    ids = []
    for item in items:
        if isinstance(item.value, int) and not isinstance(item.value, bool):
            ids.append(str(item.value))
        elif isinstance(item.value, str) and item.value:
            ids.append(item.value)
        else:
            raise item.fail(f"expected a group id (an integer or a non-empty string), got {_kind(item.value)}")
    _reject_duplicates(ids, node, "group")
    return tuple(ids)


def _calibration_lines(exclusion: CalibrationExclusion | None) -> list[str]:
    if exclusion is None:
        return []
    lines = _comments("calibration: `palettize --data` draws its calibration rows only from training rows the plan "
                      f"did not validate on:\nnot from {exclusion.describe()}. It checks that the data has "
                      f"{exclusion.training_rows:,}\ntraining rows"
                      + (" and these groups" if exclusion.exclude_groups else "") + ": give it the --data given to plan.")
    lines += ["calibration:", f"  training_rows: {exclusion.training_rows}"]
    if exclusion.exclude_last_rows is not None:
        return lines + [f"  exclude_last_rows: {exclusion.exclude_last_rows}"]
    return lines + [f"  exclude_groups: {_group_list(exclusion.exclude_groups)}"]


def _group_list(ids: tuple[str, ...]) -> str:
    """Group ids as a YAML flow list that reads back as the same strings."""
    return f"[{', '.join(_yaml_string(g) for g in ids)}]"


def dump_palettization_spec(spec: PalettizationSpec, header: str | None = None) -> str:
    """YAML that `parse_palettization_spec` reads back to an equal spec; labels become comments."""
    lines = (_comments(header) + _decode_budget_lines(spec.decode_budget) + _calibration_lines(spec.calibration)
             + ["tensors:" if spec.tensors else "tensors: []"])
    for t in spec.tensors:
        lines += _comments(t.label, "  ")
        lines += [f"  - subgraph: {t.subgraph}", f"    tensor: {t.tensor}", f"    bits: {t.bits}"]
        if t.name is not None:
            lines.append(f"    name: {_yaml_string(t.name)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pruning spec

PRUNING_EXAMPLE = """\
# Magnitude pruning: the fraction of each layer's kernel weights set to zero.
sparsity: 0.8           # optional: the default for the layers below
epochs: 3               # optional: fine-tuning epochs (0: prune once, no fine-tuning); `prune --epochs` overrides it
layers:
  - name: conv2d_1
  - name: dense
    sparsity: 0.9
"""


@dataclass(frozen=True)
class LayerPruning:
    """The target sparsity (fraction of kernel weights that are zero) of one layer."""

    name: str
    sparsity: float


@dataclass(frozen=True)
class PruningSpec:
    """Which layers to prune to what sparsity, and optionally the fine-tuning epochs and learning rate."""

    layers: tuple[LayerPruning, ...]
    epochs: int | None = None
    learning_rate: float | None = None

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


SPARSITY_HINT = "give the fraction of kernel weights to set to zero, at least 0 and below 1, e.g. 0.8"


def check_sparsity(value: float, where: str) -> float:
    """`value` when it is a sparsity in [0, 1), else a SpecError naming `where`."""
    if not 0.0 <= value < 1.0:  # also False for NaN
        raise SpecError(f"sparsity {value:g} is outside [0, 1)", where, SPARSITY_HINT)
    return float(value)


def _sparsity(node: _Node) -> float:
    v = node.value
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise node.fail(f"expected a sparsity (a number in [0, 1)), got {_kind(v)}", SPARSITY_HINT)
    if not 0.0 <= v < 1.0:
        raise node.fail(f"sparsity {v:g} is outside [0, 1)", SPARSITY_HINT)
    return float(v)


def parse_pruning_spec(text: str, source: str = "pruning spec") -> PruningSpec:
    """Parse and validate a pruning spec (see PRUNING_EXAMPLE)."""
    top = _load_yaml(text, source).mapping(("sparsity", "epochs", "learning_rate", "layers"), ("layers",))
    default = _sparsity(top["sparsity"]) if "sparsity" in top else None
    layers = []
    for node in top["layers"].items():
        keys = node.mapping(("name", "sparsity"), ("name",))
        if "sparsity" not in keys and default is None:
            raise node.fail("no sparsity for this layer", "add `sparsity:` to the layer or at the top of the spec")
        layers.append(LayerPruning(keys["name"].string(),
                                   _sparsity(keys["sparsity"]) if "sparsity" in keys else float(default or 0.0)))
    if not layers:
        raise top["layers"].fail("no layers listed", "list at least one layer to prune")
    _reject_duplicates([layer.name for layer in layers], top["layers"], "layer")
    epochs = top["epochs"].integer(0, MAX_SPEC_EPOCHS) if "epochs" in top else None
    rate = top["learning_rate"].positive_number() if "learning_rate" in top else None
    return PruningSpec(tuple(layers), epochs, rate)


def dump_pruning_spec(spec: PruningSpec, header: str | None = None, notes: dict[str, str] | None = None) -> str:
    """YAML that `parse_pruning_spec` reads back to an equal spec; `notes` (layer name → text) become comments."""
    lines = _comments(header)
    lines += [f"epochs: {spec.epochs}"] if spec.epochs is not None else []
    lines += [f"learning_rate: {spec.learning_rate!r}"] if spec.learning_rate is not None else []
    lines += ["layers:"]
    for layer in spec.layers:
        lines += _comments((notes or {}).get(layer.name), "  ")
        lines += [f"  - name: {_yaml_string(layer.name)}", f"    sparsity: {layer.sparsity!r}"]
    return "\n".join(lines) + "\n"


def parse_prune_layer_options(values: tuple[str, ...], sparsity: float | None) -> PruningSpec:
    """Parse repeated `--layer NAME=S` (or `--layer NAME` with `sparsity`, from --sparsity) options into a spec."""
    layers = []
    for value in values:
        name, sep, text = value.partition("=")
        if not name or (sep and not text.strip()):
            raise SpecError(f"cannot read --layer {value!r}", "--layer", "write it as NAME=SPARSITY, e.g. --layer dense=0.8")
        if not sep:
            if sparsity is None:
                raise SpecError(f"no sparsity for layer {name!r}", f"--layer {value}",
                                f"write --layer {name}=0.8, or give --sparsity for every --layer without one")
            layers.append(LayerPruning(name, sparsity))
            continue
        try:
            number = float(text)
        except ValueError:
            raise SpecError(f"cannot read sparsity {text!r}", f"--layer {value}", SPARSITY_HINT) from None
        layers.append(LayerPruning(name, check_sparsity(number, f"--layer {value}")))
    names = [layer.name for layer in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"layer {dupes[0]!r} is given twice", "--layer", "name each layer once")
    return PruningSpec(tuple(layers))
