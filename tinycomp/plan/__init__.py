"""Mixed-bitwidth clustering plans: per-layer sensitivity, exact byte costs, and a budgeted choice.

Split by dependency:
- `choose`: the pure choice (numpy at most): the table, `choose_plan`, `choose_plan_within_ram`,
  `checked_plan`, `pareto_front`, `plan_spec`;
- `costs`: exact byte costs and arenas with tflite-micro (no TensorFlow);
- `sensitivity`: the per-layer measurement with TensorFlow;
- `request`, `make`: one `PlanRequest` in, one `PlanOutcome` out (`make_plan`);
- `record`: the plan sidecar as a typed `PlanRecord`;
- `candidates`: the units of a measurement (`Candidate`, `CandidateResult`), shards and the partial
  tables `plan --shard` writes and `--merge` reads (`Shard`, `PartialTable`, `merge_parts`);
- `measure`: measuring candidates with TensorFlow, in this process or in worker processes.

Importing this package imports neither TensorFlow nor tflite-micro (`make_plan` does when called).
"""

from tinycomp.errors import NothingFits
from tinycomp.plan.candidates import Candidate, CandidateResult, PartialTable, Shard, merge_parts
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
from tinycomp.plan.record import SCHEMA_VERSION, CheckedPlan, PlanRecord
from tinycomp.plan.request import ByteCosts, Measurement, PlanOutcome, PlanRequest

__all__ = ["DEFAULT_CLUSTER_COUNTS", "SCHEMA_VERSION", "ArenasOf", "Budget", "ByteCosts", "Candidate",
           "CandidateResult", "CheckedPlan", "PartialTable", "Shard", "merge_parts",
           "LayerSensitivity", "Measurement", "NothingFits", "Option", "Plan", "PlanOutcome", "PlanProgress",
           "PlanRecord", "PlanRequest", "SensitivityTable", "check_counts", "checked_plan", "choose_plan",
           "choose_plan_within_ram", "counted_drops", "make_plan", "pareto_front", "plan_spec",
           "validation_noise"]
