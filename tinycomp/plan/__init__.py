"""Mixed-bitwidth clustering plans: per-layer sensitivity, exact byte costs, and a budgeted choice.

Split by dependency:
- `choose`: the pure choice (numpy at most): the table, `choose_plan`, `choose_plan_within_ram`,
  `checked_plan`, `pareto_front`, `plan_spec`;
- `costs`: exact byte costs and arenas with tflite-micro (no TensorFlow);
- `sensitivity`: the per-layer measurement with TensorFlow;
- `request`, `make`: one `PlanRequest` in, one `PlanOutcome` out (`make_plan`);
- `workflow`: plans from files, as `tinycomp plan` makes them (`PlanInputs`, `plan_model`: measure,
  resume, reuse a recorded table or merge shards; `write_plan`; `measure_shard_to`);
- `record`: the plan sidecar as a typed `PlanRecord`;
- `provenance`: the model, data and task a table was measured on, and the one comparison of them;
- `candidates`: the units of a measurement (`Candidate`, `CandidateResult`), the estimates
  (`FINE_TUNE`, `FAST`), shards and the partial tables `plan --shard` writes and `--merge` reads
  (`Shard`, `PartialTable`, `merge_parts`);
- `measure`: measuring candidates with TensorFlow, in this process or in worker processes.

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
from tinycomp.plan.make import PlanProgress, make_plan
from tinycomp.plan.provenance import Provenance
from tinycomp.plan.record import SCHEMA_VERSION, CheckedPlan, PlanRecord
from tinycomp.plan.request import ByteCosts, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.workflow import PlanInputs, measure_shard_to, plan_model, write_plan

__all__ = ["DEFAULT_CLUSTER_COUNTS", "FAST", "FINE_TUNE", "SCHEMA_VERSION", "ArenasOf", "Budget", "ByteCosts",
           "Candidate", "Estimate", "PlanInputs", "Provenance", "measure_shard_to", "plan_model", "write_plan",
           "CandidateResult", "CheckedPlan", "PartialTable", "Shard", "merge_parts",
           "LayerSensitivity", "Measurement", "NothingFits", "Option", "Plan", "PlanOutcome", "PlanProgress",
           "PlanRecord", "PlanRequest", "SensitivityTable", "check_counts", "checked_plan", "choose_plan",
           "choose_plan_within_ram", "counted_drops", "make_plan", "pareto_front", "plan_spec",
           "validation_noise"]
