# tinycomp.mk: Make rules that compress your Keras models for TensorFlow Lite Micro.
#
# Use it from your own Makefile (GNU Make 4.3 or newer):
#
#   TINYCOMP_DATA = --data data/my.npz          # set variables *before* the include line
#   TINYCOMP_FLASH_BUDGET = 64KiB
#   TINYCOMP_RAM_BUDGET = 100KiB
#   include $(shell tinycomp makefile)
#
#   all: build/kws.compressed.cc               # or: all: tinycomp-all
#
# For every models/NAME.h5 (or NAME.keras) it builds, under build/ (file names start with the model's name):
#
#   NAME.float.tflite        convert: the float32 model, the baseline for size and accuracy
#   NAME.plan.yaml, .json    plan: a cluster count per layer within the budgets (and its sensitivity table)
#   NAME.planned.h5, .yaml   cluster: the model clustered as planned (and the effective clustering spec)
#   NAME.int8.tflite         quantize --per-tensor-dense: full-integer int8
#   NAME.compression.yaml    find-tensors: which tensors to LUT-compress, and how
#   NAME.compressed.tflite   compress --strip: the file to put on the device
#   NAME.compressed.cc, .h   export: the same as a C array for the firmware
#   NAME.eval.json           eval: accuracy, flash and TFLM arena of float32 and compressed, in TFLM
#   NAME.report/summary.md   report: summary.md, size_vs_accuracy.png, predictions.png
#   NAME.budgets.ok          the gate: exists only when the compressed model fits the flash and RAM
#                            budgets and its accuracy drop is within TINYCOMP_ACCURACY_DROP
#
# For every models/NAME.tflite (an int8 model from any framework: no Keras, no training) it builds:
#
#   NAME.plan.yaml, .json    plan: bits per weight tensor within the budgets, measured in TFLM
#   NAME.palettized.tflite   palettize --spec: each tensor's int8 values clustered per channel as planned
#   NAME.palettized.yaml     the compression spec palettize writes for compress
#   NAME.compressed.tflite, NAME.compressed.cc/.h, NAME.eval.json, NAME.report/, NAME.budgets.ok
#                            as above, with models/NAME.tflite itself as the baseline
#
# A name must be one kind of model: models/kws.h5 and models/kws.tflite together are ambiguous.
#
# `make build/kws.budgets.ok` (or `make tinycomp-all` for every model) builds everything above and
# fails, after the artifacts are written, when a budget fails. `make build/kws.compressed.tflite`
# builds only what that file needs. Every target is a real file: a second run does nothing, and
# editing a model or the data file re-runs only what depends on it. Make does not track variables:
# after changing a budget or an option, remove the files it affects (e.g. `rm build/kws.*`) or run
# `make -B`.
#
# All names this file defines start with TINYCOMP_, tinycomp_ or tinycomp- (and it sets
# .DELETE_ON_ERROR, see below). It does not change your Makefile's default goal.

# ---------------------------------------------------------------- variables (set before the include)

# The tinycomp command, e.g. `.venv/bin/tinycomp` or `python -m tinycomp`.
TINYCOMP ?= tinycomp
# Where the models are (NAME.h5, NAME.keras) and where everything is written.
TINYCOMP_MODELS ?= models
TINYCOMP_BUILD ?= build
# Keras model file extensions with rules: .h5 and .keras files (int8 .tflite files have rules of their own). (A SavedModel is a directory, whose
# time stamp Make cannot trust: convert it once with `tinycomp cluster`/`convert`, or save it as .keras.)
TINYCOMP_MODEL_EXTS ?= h5 keras
# The models `tinycomp-all` builds: every model in TINYCOMP_MODELS.
TINYCOMP_NAMES ?= $(sort $(basename $(notdir $(foreach tinycomp_ext,$(TINYCOMP_MODEL_EXTS),\
                    $(wildcard $(TINYCOMP_MODELS)/*.$(tinycomp_ext))))))
# The int8 .tflite models `tinycomp-all` builds: every NAME.tflite in TINYCOMP_MODELS.
TINYCOMP_TFLITE_NAMES ?= $(sort $(basename $(notdir $(wildcard $(TINYCOMP_MODELS)/*.tflite))))
# Data options of plan, cluster, quantize, eval and report: `--data FILE.npz` (x_train, y_train,
# x_test, y_test) or `--dataset NAME`. A --data file is a prerequisite of every step that reads it.
TINYCOMP_DATA ?= --dataset mnist
# Budgets. Flash is the .tflite's bytes, RAM the TFLM arena bytes (sizes as `tinycomp eval` reads
# them: 65536, 64KiB, 100KB); empty means no budget. The accuracy drop is in percentage points below
# the float32 model on the test set: plan keeps its prediction within it, report and the gate check it.
TINYCOMP_FLASH_BUDGET ?=
TINYCOMP_RAM_BUDGET ?=
TINYCOMP_ACCURACY_DROP ?= 0.5
# Any task, and the gate for regression/reconstruction models: the compressed model's output SNR
# against the float32 model's, at least this many dB (empty: not checked). For a regression model,
# set TINYCOMP_ACCURACY_DROP empty (it has no accuracy) and use this instead.
TINYCOMP_MIN_SNR ?=
# What plan optimises: by default the fewest bytes within the accuracy drop (and, with a RAM budget,
# an arena within it: large weights are then sliced so they decode one slice at a time; the plan's
# decode_budget travels through NAME.planned.yaml and NAME.compression.yaml to compress). E.g. `--target-bytes 64KiB` instead: the smallest drop within 64 KiB.
TINYCOMP_PLAN_BUDGET ?= --max-accuracy-drop $(TINYCOMP_ACCURACY_DROP)$(if $(TINYCOMP_RAM_BUDGET), --ram-budget $(TINYCOMP_RAM_BUDGET))
# Extra options per step, e.g. TINYCOMP_PLAN_OPTIONS = --clusters 2,4,8,16 --epochs 2,
# TINYCOMP_CLUSTER_OPTIONS = --batch-size 64 (the plan's spec sets the epochs and learning rate), TINYCOMP_EVAL_OPTIONS = --limit 1000,
# TINYCOMP_PALETTIZE_OPTIONS = --jobs 2 (a .tflite's palettize step calibrates on $(TINYCOMP_DATA)'s training rows,
# as its plan measured the candidates: the same rows, so it makes the file the plan measured).
TINYCOMP_PLAN_OPTIONS ?=
TINYCOMP_CLUSTER_OPTIONS ?=
TINYCOMP_QUANTIZE_OPTIONS ?=
TINYCOMP_PALETTIZE_OPTIONS ?=
TINYCOMP_COMPRESS_OPTIONS ?=
TINYCOMP_EVAL_OPTIONS ?=
TINYCOMP_REPORT_OPTIONS ?=
# The C array's name in NAME.compressed.cc (its length is SYMBOL_len): g_NAME_model, with - and . as _.
TINYCOMP_EXPORT_SYMBOL ?= g_$(subst -,_,$(subst .,_,$*))_model
# Order-only prerequisites of every step (e.g. a stamp file that installs tinycomp).
TINYCOMP_DEPS ?=

# ---------------------------------------------------------------- helpers

# The file after `--data` (or in `--data=FILE`) in a list of options; empty for `--dataset NAME`.
tinycomp_data_file = $(patsubst --data=%,%,$(filter --data=%,$1))$(call tinycomp_after_data,$1)
tinycomp_after_data = $(if $(word 2,$1),$(if $(filter --data,$(word 1,$1)),$(word 2,$1),$(call tinycomp_after_data,$(wordlist 2,$(words $1),$1))))
tinycomp_data := $(call tinycomp_data_file,$(TINYCOMP_DATA))
# Every file built for the models $1 (listing them also keeps Make from deleting them as intermediates).
tinycomp_outputs = $(foreach n,$1,$(addprefix $(TINYCOMP_BUILD)/$n.,float.tflite plan.yaml plan.json planned.h5 \
                     planned.yaml int8.tflite compression.yaml compressed.tflite compressed.cc compressed.h \
                     eval.json report/summary.md budgets.ok))
# Every file built for the int8 .tflite models $1.
tinycomp_tflite_outputs = $(foreach n,$1,$(addprefix $(TINYCOMP_BUILD)/$n.,plan.yaml plan.json palettized.tflite \
                            palettized.yaml compressed.tflite compressed.cc compressed.h eval.json report/summary.md \
                            budgets.ok))

tinycomp_default_goal := $(.DEFAULT_GOAL)

# ---------------------------------------------------------------- rules

# A failed recipe's target is deleted, so Make never trusts a half-made file. (tinycomp itself writes
# every output atomically; this covers the shell steps too.)
.DELETE_ON_ERROR:
# Keep every step's file, also when a goal like build/kws.compressed.tflite made it on the way.
.PRECIOUS: $(addprefix $(TINYCOMP_BUILD)/%.,float.tflite plan.yaml plan.json planned.h5 planned.yaml int8.tflite \
             compression.yaml compressed.tflite compressed.cc compressed.h eval.json report/summary.md \
             palettized.tflite palettized.yaml)

# $(1): a model file extension. The steps that read the model itself.
define tinycomp_model_rules
# The float32 .tflite (fixed batch-1 input): the baseline of eval and of plan's --target-ratio.
$(TINYCOMP_BUILD)/%.float.tflite: $(TINYCOMP_MODELS)/%.$(1) | $(TINYCOMP_DEPS)
	@mkdir -p $$(@D)
	$$(TINYCOMP) convert $$< -o $$@

# The plan: per-layer sensitivity, exact LUT bytes, and the cluster counts within the budget. Bytes
# are measured as the chain below makes them (--per-tensor-dense, --strip).
$(TINYCOMP_BUILD)/%.plan.yaml $(TINYCOMP_BUILD)/%.plan.json: $(TINYCOMP_MODELS)/%.$(1) $(tinycomp_data) | $(TINYCOMP_DEPS)
	@mkdir -p $$(@D)
	$$(TINYCOMP) plan $$< $$(TINYCOMP_PLAN_BUDGET) --per-tensor-dense --strip $$(TINYCOMP_PLAN_OPTIONS) -o $$(TINYCOMP_BUILD)/$$*.plan.yaml $$(TINYCOMP_DATA)

# Clusters the planned layers (TFMOT), fine-tunes as the plan's spec says (epochs: 0, or nothing to cluster: not at all),
# and writes the effective spec next to the model.
$(TINYCOMP_BUILD)/%.planned.h5 $(TINYCOMP_BUILD)/%.planned.yaml: $(TINYCOMP_MODELS)/%.$(1) $(TINYCOMP_BUILD)/%.plan.yaml $(tinycomp_data) | $(TINYCOMP_DEPS)
	$$(TINYCOMP) cluster $$< --spec $$(TINYCOMP_BUILD)/$$*.plan.yaml $$(TINYCOMP_CLUSTER_OPTIONS) -o $$(TINYCOMP_BUILD)/$$*.planned.h5 $$(TINYCOMP_DATA)
endef
$(foreach tinycomp_ext,$(TINYCOMP_MODEL_EXTS),$(eval $(call tinycomp_model_rules,$(tinycomp_ext))))

# An int8 .tflite: the plan is bits per weight tensor, measured zero-shot in TFLM (no TensorFlow).
$(TINYCOMP_BUILD)/%.plan.yaml $(TINYCOMP_BUILD)/%.plan.json: $(TINYCOMP_MODELS)/%.tflite $(tinycomp_data) | $(TINYCOMP_DEPS)
	@mkdir -p $(@D)
	$(TINYCOMP) plan $< $(TINYCOMP_PLAN_BUDGET) --strip $(TINYCOMP_PLAN_OPTIONS) -o $(TINYCOMP_BUILD)/$*.plan.yaml $(TINYCOMP_DATA)

# Each planned tensor's int8 values clustered per channel, calibrated on the data as the plan measured them,
# and the spec for compress.
$(TINYCOMP_BUILD)/%.palettized.tflite $(TINYCOMP_BUILD)/%.palettized.yaml &: $(TINYCOMP_MODELS)/%.tflite $(TINYCOMP_BUILD)/%.plan.yaml $(tinycomp_data) | $(TINYCOMP_DEPS)
	$(TINYCOMP) palettize $< --spec $(TINYCOMP_BUILD)/$*.plan.yaml $(TINYCOMP_PALETTIZE_OPTIONS) -o $(TINYCOMP_BUILD)/$*.palettized.tflite $(TINYCOMP_DATA)

$(TINYCOMP_BUILD)/%.compressed.tflite: $(TINYCOMP_BUILD)/%.palettized.tflite $(TINYCOMP_BUILD)/%.palettized.yaml | $(TINYCOMP_DEPS)
	$(TINYCOMP) compress $< --spec $(TINYCOMP_BUILD)/$*.palettized.yaml --strip $(TINYCOMP_COMPRESS_OPTIONS) -o $@

# Full-integer int8, one weight scale per Dense layer (as plan measured it).
$(TINYCOMP_BUILD)/%.int8.tflite: $(TINYCOMP_BUILD)/%.planned.h5 $(tinycomp_data) | $(TINYCOMP_DEPS)
	$(TINYCOMP) quantize $< -o $@ --per-tensor-dense $(TINYCOMP_QUANTIZE_OPTIONS) $(TINYCOMP_DATA)

# The clustered layers' weight tensors, with the layout and bitwidth their int8 values need.
$(TINYCOMP_BUILD)/%.compression.yaml: $(TINYCOMP_BUILD)/%.int8.tflite $(TINYCOMP_BUILD)/%.planned.yaml | $(TINYCOMP_DEPS)
	$(TINYCOMP) find-tensors $< --clustering $(TINYCOMP_BUILD)/$*.planned.yaml -o $@

# LUT compression and stripping; TFLM outputs are checked identical to the int8 model's.
$(TINYCOMP_BUILD)/%.compressed.tflite: $(TINYCOMP_BUILD)/%.int8.tflite $(TINYCOMP_BUILD)/%.compression.yaml | $(TINYCOMP_DEPS)
	$(TINYCOMP) compress $< --spec $(TINYCOMP_BUILD)/$*.compression.yaml --strip $(TINYCOMP_COMPRESS_OPTIONS) -o $@

# The C array and its header for the firmware.
$(TINYCOMP_BUILD)/%.compressed.cc $(TINYCOMP_BUILD)/%.compressed.h: $(TINYCOMP_BUILD)/%.compressed.tflite | $(TINYCOMP_DEPS)
	$(TINYCOMP) export $< -o $(TINYCOMP_BUILD)/$*.compressed.cc --symbol $(TINYCOMP_EXPORT_SYMBOL)

# float32 and compressed in the TFLM interpreter, marked FITS / TOO BIG against the budgets.
# `eval --json` writes the JSON first and then exits 1 when no model fits; that is not this step's
# failure (the gate below fails instead, after the report is written), so a JSON written by this
# run (the old one is removed first) counts as success. Any other error writes no JSON and fails.
$(TINYCOMP_BUILD)/%.eval.json: $(TINYCOMP_BUILD)/%.float.tflite $(TINYCOMP_BUILD)/%.compressed.tflite $(tinycomp_data) | $(TINYCOMP_DEPS)
	@rm -f $@
	$(TINYCOMP) eval $(TINYCOMP_BUILD)/$*.float.tflite $(TINYCOMP_BUILD)/$*.compressed.tflite \
	  --baseline $(TINYCOMP_BUILD)/$*.float.tflite $(if $(TINYCOMP_FLASH_BUDGET),--flash-budget $(TINYCOMP_FLASH_BUDGET)) \
	  $(if $(TINYCOMP_RAM_BUDGET),--ram-budget $(TINYCOMP_RAM_BUDGET)) $(TINYCOMP_EVAL_OPTIONS) $(TINYCOMP_DATA) --json $@ \
	  || test -f $@

# An int8 .tflite model: the given file is the baseline.
$(TINYCOMP_BUILD)/%.eval.json: $(TINYCOMP_MODELS)/%.tflite $(TINYCOMP_BUILD)/%.compressed.tflite $(tinycomp_data) | $(TINYCOMP_DEPS)
	@rm -f $@
	$(TINYCOMP) eval $< $(TINYCOMP_BUILD)/$*.compressed.tflite \
	  --baseline $< $(if $(TINYCOMP_FLASH_BUDGET),--flash-budget $(TINYCOMP_FLASH_BUDGET)) \
	  $(if $(TINYCOMP_RAM_BUDGET),--ram-budget $(TINYCOMP_RAM_BUDGET)) $(TINYCOMP_EVAL_OPTIONS) $(TINYCOMP_DATA) --json $@ \
	  || test -f $@

# Figures and summary.md (a verdict per model, for people and CI job summaries).
$(TINYCOMP_BUILD)/%.report/summary.md: $(TINYCOMP_BUILD)/%.eval.json $(tinycomp_data) | $(TINYCOMP_DEPS)
	$(TINYCOMP) report $< -o $(TINYCOMP_BUILD)/$*.report $(if $(TINYCOMP_ACCURACY_DROP),--max-drop $(TINYCOMP_ACCURACY_DROP)) \
	  $(if $(TINYCOMP_MIN_SNR),--min-snr $(TINYCOMP_MIN_SNR)) \
	  $(TINYCOMP_REPORT_OPTIONS) $(TINYCOMP_DATA)

# The gate, last: after every artifact of the model is written, `tinycomp gate` fails if the
# compressed model is TOO BIG for eval's flash/RAM budgets or its accuracy is more than
# TINYCOMP_ACCURACY_DROP points below the float32 model's; on success it writes what was checked. A
# failed gate leaves no NAME.budgets.ok (not even an earlier one).
$(TINYCOMP_BUILD)/%.budgets.ok: $(TINYCOMP_BUILD)/%.eval.json $(TINYCOMP_BUILD)/%.report/summary.md \
                                $(TINYCOMP_BUILD)/%.compressed.cc | $(TINYCOMP_DEPS)
	@rm -f $@
	$(TINYCOMP) gate $< --model $(TINYCOMP_BUILD)/$*.compressed.tflite \
	  $(if $(TINYCOMP_ACCURACY_DROP),--max-accuracy-drop $(TINYCOMP_ACCURACY_DROP)) \
	  $(if $(TINYCOMP_MIN_SNR),--min-agreement-snr $(TINYCOMP_MIN_SNR)) > $@.tmp \
	  && mv $@.tmp $@ && cat $@ || { rm -f $@.tmp; exit 1; }

# Every model in TINYCOMP_NAMES: all artifacts, then the gates (`make -k tinycomp-all` builds the
# other models' artifacts even when one fails its budget).
.PHONY: tinycomp-all tinycomp-clean
tinycomp-all: $(call tinycomp_outputs,$(TINYCOMP_NAMES)) $(call tinycomp_tflite_outputs,$(TINYCOMP_TFLITE_NAMES))

# Removes the files built for the models in TINYCOMP_NAMES (not TINYCOMP_BUILD itself).
tinycomp-clean:
	rm -rf $(foreach n,$(TINYCOMP_NAMES),$(addprefix $(TINYCOMP_BUILD)/$n.,float.tflite plan.yaml plan.json \
	  planned.h5 planned.yaml planned.json int8.tflite compression.yaml compressed.tflite compressed.cc \
	  compressed.h eval.json report budgets.ok)) \
	  $(foreach n,$(TINYCOMP_TFLITE_NAMES),$(addprefix $(TINYCOMP_BUILD)/$n.,plan.yaml plan.json palettized.tflite \
	  palettized.yaml compressed.tflite compressed.cc compressed.h eval.json report budgets.ok))

.DEFAULT_GOAL := $(tinycomp_default_goal)
