# tinycomp: the TFLM MNIST compression tutorial as a Make pipeline.
#   make demo    install into .venv (once), run the whole pipeline, print the results table
#   make test    install into .venv (once), run the test suite
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
STAMP ?= $(VENV)/.installed-stamp

.PHONY: demo test test-fast install clean
.DELETE_ON_ERROR:

demo: $(BUILD)/eval.json

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m 'not slow'

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

$(BUILD)/eval.json: $(BUILD)/model.tflite $(BUILD)/model_int8.tflite $(BUILD)/clustered_int8.tflite $(BUILD)/compressed.tflite
	$(TINYCOMP) eval $^ --baseline $(BUILD)/model.tflite $(DATA) --json $@

clean:
	rm -rf $(BUILD)
