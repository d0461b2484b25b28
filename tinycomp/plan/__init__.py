"""Mixed-bitwidth plans: per-tensor sensitivity, exact byte costs, and a budgeted choice, for a Keras
model (TFMOT clustering) or an int8 .tflite (palettization), through one core.

Split by dependency:
- `choose`: the pure choice (numpy at most): the table, `choose_plan`, `choose_plan_within_ram`,
  `checked_plan`, `pareto_front`, `plan_spec`;
- `decision`: the one rule that accepts or refuses a measured drop against the budget (`DECISION`);
- `make`: the plan core: the `Backend` protocol and `make_plan(backend, request)` (measure or reuse,
  choose, check, refine, exact bytes and arenas from the backend's `model_bytes`), `measure_shard`;
- `keras_backend`: the Keras backend (`KerasBackend`, TensorFlow when it measures);
- `tflite_plan`: the .tflite backend (`TfliteBackend`: palettized candidates run in TFLM, no TensorFlow);
- `tflite_palettes`: its weights palettized per bitwidth (calibrated), the files and the spec made of them;
- `tflite_rows`: its candidates' and its check's validation rows, and the score;
- `tflite_runner`: the given file, candidates and joint check in TFLM workers, from cached cut activations;
- `tflite_schedule`: which candidates it measures under a drop budget (probes first), and measuring them;
- `costs`: exact byte costs and arenas of Keras plans' synthetic files with tflite-micro (no TensorFlow);
- `sensitivity`: the per-layer measurement with TensorFlow;
- `request`: one `PlanRequest` in (`Measurement`, `ByteCosts`), one `PlanOutcome` out, `JointDrop`;
- `workflow`: plans from files, as `tinycomp plan` makes them (`PlanInputs`, `plan_model`: measure,
  resume, reuse a recorded table or merge shards; `write_plan`; `measure_shard_to`);
- `plan_record`: the plan sidecar as a typed `PlanRecord` (which backend measured included);
- `provenance`: the model, data and task a table was measured on, and the one comparison of them;
- `seen_rows`: whether the given model was trained on the plan's validation rows (`validation_note`);
- `candidates`: the units of a measurement (`Candidate(tensor, bits)`, `CandidateResult`), the estimates
  (`FINE_TUNE`, `FAST`), shards and the partial tables `plan --shard` writes and `--merge` reads
  (`Shard`, `PartialTable`, `merge_parts`);
- `measure`: measuring Keras candidates with TensorFlow, in this process or in worker processes.

Drops are in the task's unit (`metrics.Task.unit`: pp of top-1 accuracy, dB of output SNR).

Importing this package imports neither TensorFlow nor tflite-micro (`make_plan` does when called).
"""

from tinycomp.errors import NothingFits
from tinycomp.plan.candidates import (
    FAST,
    FINE_TUNE,
    Candidate,
    CandidateResult,
    Estimate,
    PartialTable,
    Shard,
    merge_parts,
)
from tinycomp.plan.choose import (
    DEFAULT_CLUSTER_COUNTS,
    ArenasOf,
    Budget,
    LayerSensitivity,
    Option,
    Plan,
    SensitivityTable,
    check_counts,
    checked_plan,
    choose_plan,
    choose_plan_within_ram,
    counted_drops,
    pareto_front,
    plan_spec,
    validation_noise,
)
from tinycomp.plan.decision import DECISION, Decision, Measured
from tinycomp.plan.make import Backend, PlanProgress, make_plan
from tinycomp.plan.plan_record import SCHEMA_VERSION, CheckedPlan, PlanRecord
from tinycomp.plan.provenance import Provenance
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.workflow import PlanInputs, measure_shard_to, plan_model, write_plan

__all__ = ["DECISION", "Backend", "Decision", "JointDrop", "Measured", "DEFAULT_CLUSTER_COUNTS", "FAST", "FINE_TUNE", "SCHEMA_VERSION", "ArenasOf", "Budget", "ByteCosts",
           "Candidate", "Estimate", "PlanInputs", "Provenance", "measure_shard_to", "plan_model", "write_plan",
           "CandidateResult", "CheckedPlan", "PartialTable", "Shard", "merge_parts",
           "LayerSensitivity", "Measurement", "NothingFits", "Option", "Plan", "PlanOutcome", "PlanProgress",
           "PlanRecord", "PlanRequest", "SensitivityTable", "check_counts", "checked_plan", "choose_plan",
           "choose_plan_within_ram", "counted_drops", "make_plan", "pareto_front", "plan_spec",
           "validation_noise"]
