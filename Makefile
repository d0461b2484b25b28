# tinycomp: the TFLM MNIST compression tutorial as a Make pipeline.
#   make demo    install into .venv (once), run the whole pipeline, print the results table
#   make test    install into .venv (once), run the test suite
#   make test-fast / make lint   the unit tier of the tests (tests/unit: no TensorFlow) / ruff and mypy
#   make MODEL=path/to/model.h5 DATA="--data my.npz" compressed
#                your model through plan → cluster → quantize → find-tensors → compress --strip →
#                eval → report → export, gated on FLASH_BUDGET, RAM_BUDGET and ACCURACY_DROP
#   make clean   remove build/
# Every target is a real file under build/: a second `make demo` does nothing, editing
# specs/clustering.yaml re-runs only what depends on it, and `make -j2` works.

PYTHON ?= python3
VENV ?= .venv
DATASET ?= mnist
EPOCHS ?= 3
BUILD ?= build
TINYCOMP ?= $(VENV)/bin/tinycomp
DATA ?= --dataset $(DATASET)
CLUSTERING_SPEC ?= specs/clustering.yaml
# compressed_sliced.tflite: no LUT-decoded weight slice larger than this in the TFLM arena (docs/slicing.md)
DECODE_BUDGET ?= 16KiB
STAMP ?= $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint docs install clean compressed
.DELETE_ON_ERROR:

demo: $(BUILD)/eval.json

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

# Test processes (pytest-xdist), whole modules to a worker so module fixtures are built once;
# TEST_JOBS=0 runs everything in this process.
TEST_JOBS ?= 2
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_JOBS) --dist loadfile --durations=15

# tests/unit: no TensorFlow, no subprocess (its conftest fails a test that does): seconds.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest tests/unit

# ruff (pyflakes, pycodestyle errors, isort, bugbear, pyupgrade) and mypy on the library; see pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check tinycomp tests
	$(VENV)/bin/mypy

# docs/cli.md, the command reference, regenerated from every command's --help (a test checks it is current).
docs: $(STAMP)
	$(VENV)/bin/python -m tinycomp.cli_reference docs/cli.md

$(BUILD):
	mkdir -p $@

$(BUILD)/model.h5: | $(STAMP) $(BUILD)
	$(TINYCOMP) train -o $@ $(DATA) --epochs $(EPOCHS)

$(BUILD)/model.tflite: $(BUILD)/model.h5
	$(TINYCOMP) convert $< -o $@

$(BUILD)/model_int8.tflite: $(BUILD)/model.h5
	$(TINYCOMP) quantize $< -o $@ $(DATA)

$(BUILD)/clustered.h5 $(BUILD)/clustered.yaml &: $(BUILD)/model.h5 $(CLUSTERING_SPEC)
	$(TINYCOMP) cluster $< --spec $(CLUSTERING_SPEC) -o $(BUILD)/clustered.h5 $(DATA)

$(BUILD)/clustered_int8.tflite: $(BUILD)/clustered.h5
	$(TINYCOMP) quantize $< -o $@ $(DATA)

$(BUILD)/compression.yaml: $(BUILD)/clustered_int8.tflite $(BUILD)/clustered.yaml
	$(TINYCOMP) find-tensors $< --clustering $(BUILD)/clustered.yaml -o $@

$(BUILD)/compressed.tflite: $(BUILD)/clustered_int8.tflite $(BUILD)/compression.yaml
	$(TINYCOMP) compress $< --spec $(BUILD)/compression.yaml -o $@

# The same compression with the large weights sliced along their output channels: a little more flash, far less arena.
$(BUILD)/compressed_sliced.tflite: $(BUILD)/clustered_int8.tflite $(BUILD)/compression.yaml
	$(TINYCOMP) compress $< --spec $(BUILD)/compression.yaml --decode-budget $(DECODE_BUDGET) -o $@

$(BUILD)/eval.json: $(BUILD)/model.tflite $(BUILD)/model_int8.tflite $(BUILD)/clustered_int8.tflite $(BUILD)/compressed.tflite \
                    $(BUILD)/compressed_sliced.tflite
	$(TINYCOMP) eval $^ --baseline $(BUILD)/model.tflite $(DATA) --json $@

clean:
	rm -rf $(BUILD)

# ---------------------------------------------------------------- make bench: tutorial recipe vs `tinycomp plan`
#   make bench     on the same data: the tutorial recipe, and two plans through the real chain
#                  (cluster → quantize --per-tensor-dense → find-tensors → compress --strip):
#                  planned      fewest bytes within PLAN_BUDGET (0.5 pp accuracy drop)
#                  planned_12x  smallest accuracy drop within PLAN_12X_BUDGET (12× smaller than model.tflite)
#                  planned_ram  fewest bytes within PLAN_RAM_BUDGET (0.5 pp, and a TFLM arena of at most 100 KiB)
#                  deep         Deep Compression: prune (PRUNE_SPARSITY) → cluster (CLUSTERING_SPEC) → quantize →
#                               compress --lossless (Huffman/PRUNE/LUT per tensor, the fewest bytes)
# The plans' candidates fine-tune PLAN_EPOCHS epochs; `cluster` then fine-tunes as the plan's spec says (its
# `epochs`: PLAN_EPOCHS, or 0 when the plan's check found the zero-shot plan no worse).
PLAN_BUDGET ?= --max-accuracy-drop 0.5
PLAN_12X_BUDGET ?= --target-ratio 12
PLAN_RAM_BUDGET ?= --max-accuracy-drop 0.5 --ram-budget 100KiB
PLAN_EPOCHS ?= 2
PLAN_SEED ?= 0
# `plan --estimate`: fast (the default: zero-shot, fine-tune only the candidates that can be chosen, then step the
# plan down on measured drops) or fine-tune (every candidate)
PLAN_ESTIMATE ?= fast

.PHONY: bench

bench: $(BUILD)/bench.json $(BUILD)/bench_report/summary.md
	$(TINYCOMP) bench-summary $< --json $(BUILD)/bench_summary.json

# Plot of bytes vs accuracy, test images with float32 / plan (b) predictions, and a markdown summary for CI.
$(BUILD)/bench_report/summary.md: $(BUILD)/bench.json
	$(TINYCOMP) report $< --model $(BUILD)/planned.tflite -o $(BUILD)/bench_report $(DATA)

$(BUILD)/plan.yaml: $(BUILD)/model.h5
	$(TINYCOMP) plan $< $(PLAN_BUDGET) --per-tensor-dense --strip --epochs $(PLAN_EPOCHS) --estimate $(PLAN_ESTIMATE) \
		--seed $(PLAN_SEED) -o $@ $(DATA)

# The other plans re-choose from the first one's sensitivity table (plan.json) instead of measuring again.
$(BUILD)/plan_12x.yaml: $(BUILD)/model.h5 $(BUILD)/plan.yaml
	$(TINYCOMP) plan $< $(PLAN_12X_BUDGET) --per-tensor-dense --strip --sensitivity $(BUILD)/plan.json -o $@ $(DATA)

$(BUILD)/plan_ram.yaml: $(BUILD)/model.h5 $(BUILD)/plan.yaml
	$(TINYCOMP) plan $< $(PLAN_RAM_BUDGET) --per-tensor-dense --strip --sensitivity $(BUILD)/plan.json -o $@ $(DATA)

# $(1): file name suffix of the plan
define PLANNED_CHAIN
$(BUILD)/planned$(1).h5 $(BUILD)/planned$(1).yaml &: $(BUILD)/model.h5 $(BUILD)/plan$(1).yaml
	$(TINYCOMP) cluster $$< --spec $(BUILD)/plan$(1).yaml --seed $(PLAN_SEED) -o $(BUILD)/planned$(1).h5 $(DATA)

$(BUILD)/planned$(1)_int8.tflite: $(BUILD)/planned$(1).h5
	$(TINYCOMP) quantize $$< -o $$@ --per-tensor-dense $(DATA)

$(BUILD)/planned$(1)_compression.yaml: $(BUILD)/planned$(1)_int8.tflite $(BUILD)/planned$(1).yaml
	$(TINYCOMP) find-tensors $$< --clustering $(BUILD)/planned$(1).yaml -o $$@

$(BUILD)/planned$(1).tflite: $(BUILD)/planned$(1)_int8.tflite $(BUILD)/planned$(1)_compression.yaml
	$(TINYCOMP) compress $$< --spec $(BUILD)/planned$(1)_compression.yaml --strip -o $$@
endef

$(eval $(call PLANNED_CHAIN,))
$(eval $(call PLANNED_CHAIN,_12x))
$(eval $(call PLANNED_CHAIN,_ram))

# Deep Compression (prune → trained quantization → entropy coding): prune every layer to PRUNE_SPARSITY, cluster
# the tutorial's layers (their zeros kept), quantize, LUT-compress. The entropy-coding step is to be
PRUNE_SPARSITY ?= 0.8

$(BUILD)/pruned.h5 $(BUILD)/pruned.yaml &: $(BUILD)/model.h5
	$(TINYCOMP) prune $< --sparsity $(PRUNE_SPARSITY) -o $(BUILD)/pruned.h5 $(DATA)

$(BUILD)/deep.h5 $(BUILD)/deep.yaml &: $(BUILD)/pruned.h5 $(CLUSTERING_SPEC)
	$(TINYCOMP) cluster $< --spec $(CLUSTERING_SPEC) -o $(BUILD)/deep.h5 $(DATA)

$(BUILD)/deep_int8.tflite: $(BUILD)/deep.h5
	$(TINYCOMP) quantize $< -o $@ $(DATA)

# Every weight tensor gets the smallest exact encoding TFLM decodes (LUT, HUFFMAN or PRUNE), no spec needed.
$(BUILD)/deep.tflite: $(BUILD)/deep_int8.tflite
	$(TINYCOMP) compress $< --lossless --strip -o $@

$(BUILD)/bench.json: $(BUILD)/model.tflite $(BUILD)/compressed.tflite $(BUILD)/planned.tflite $(BUILD)/planned_12x.tflite \
                     $(BUILD)/planned_ram.tflite $(BUILD)/deep.tflite
	$(TINYCOMP) eval $^ --baseline $(BUILD)/model.tflite $(DATA) --json $@

# ---------------------------------------------------------------- make compressed: your model, no training
#   make MODEL=path/to/model.h5 DATA="--data my.npz" FLASH_BUDGET=64KiB RAM_BUDGET=100KiB ACCURACY_DROP=0.5 compressed
# runs plan → cluster → quantize --per-tensor-dense → find-tensors → compress --strip → eval → report
# → export on MODEL and writes $(BUILD)/NAME.* for models/NAME.h5 (NAME.compressed.tflite,
# NAME.compressed.cc/.h, NAME.eval.json, NAME.report/, ...). It fails, after writing them, when the
# compressed model is over the flash or RAM budget (TFLM arena; empty: no budget) or its test accuracy
# is more than ACCURACY_DROP percentage points below the float32 model's (for a regression model:
# ACCURACY_DROP= MIN_SNR=30, its output SNR against the float32 model's in dB). The rules are the ones users
# include in their own Makefiles (tinycomp/make/tinycomp.mk, `tinycomp makefile` prints its path);
# any of its TINYCOMP_* variables can be given here too, e.g. TINYCOMP_PLAN_OPTIONS="--epochs 1".
MODEL ?=
FLASH_BUDGET ?=
RAM_BUDGET ?=
ACCURACY_DROP ?= 0.5
MIN_SNR ?=
MODEL_NAME = $(basename $(notdir $(MODEL)))

TINYCOMP_MODELS = $(patsubst %/,%,$(dir $(MODEL)))
TINYCOMP_NAMES = $(MODEL_NAME)
TINYCOMP_BUILD = $(BUILD)
TINYCOMP_DATA = $(DATA)
TINYCOMP_FLASH_BUDGET = $(FLASH_BUDGET)
TINYCOMP_RAM_BUDGET = $(RAM_BUDGET)
TINYCOMP_ACCURACY_DROP = $(ACCURACY_DROP)
TINYCOMP_MIN_SNR = $(MIN_SNR)
TINYCOMP_DEPS = $(STAMP)
include tinycomp/make/tinycomp.mk

ifeq ($(MODEL),)
compressed:
	@echo 'Error: give the model, e.g. make MODEL=models/kws.h5 DATA="--data data/kws.npz" compressed' >&2; exit 2
else
compressed: $(BUILD)/$(MODEL_NAME).budgets.ok
endif

# ---------------------------------------------------------------- make plan-sharded: plan (b)'s table in shards
#   make plan-sharded SHARDS=4 -j4   measures the SHARDS parts of `plan`'s candidates as separate processes
#                                    (`plan --shard I/N`, each part a partial table), then merges them
#                                    (`plan --merge`) into $(BUILD)/plan_sharded.yaml under PLAN_BUDGET: the plan
#                                    `make bench` makes as $(BUILD)/plan.yaml, from the same seed.
# The same commands run as a CI matrix, one job per shard (docs/plan.md shows a GitHub Actions workflow).
SHARDS ?= 4
PLAN_MEASUREMENT = --epochs $(PLAN_EPOCHS) --estimate $(PLAN_ESTIMATE) --seed $(PLAN_SEED)
PLAN_PARTS = $(foreach i,$(shell seq 1 $(SHARDS)),$(BUILD)/plan_part_$(i)_of_$(SHARDS).json)

.PHONY: plan-sharded
plan-sharded: $(BUILD)/plan_sharded.yaml

$(BUILD)/plan_part_%_of_$(SHARDS).json: $(BUILD)/model.h5
	$(TINYCOMP) plan $< --shard $*/$(SHARDS) $(PLAN_MEASUREMENT) -o $@ $(DATA)

$(BUILD)/plan_sharded.yaml: $(BUILD)/model.h5 $(PLAN_PARTS)
	$(TINYCOMP) plan $< --merge $(PLAN_PARTS) $(PLAN_BUDGET) --per-tensor-dense --strip -o $@ $(DATA)
