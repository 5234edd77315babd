# Set-up and entry points. Every target first builds .venv (Python 3.11) with the
# versions pinned in constraints.txt; it is rebuilt when setup.py or the pins change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# test processes (pytest-xdist): one per core of CI's 2-core machine; JOBS=0 runs in one.
# The 3-D (video) tests run after the rest, in processes of their own (README, known
# limits: MXNet's oneDNN after 2-D networks).
JOBS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadfile)
VIDEO_TESTS := tests/test_octconv3d.py tests/test_video.py tests/test_video_training.py

.PHONY: demo test test-all table2 cpp clean

demo: $(STAMP)  ## the main job on the embedded default: train, score, export, TVM
	rm -rf runs/demo
	$(BIN)/python train_imagenet.py --config configs/demo_digits.yaml
	$(BIN)/python score.py runs/demo --data runs/digits/val
	$(BIN)/python tools/export_onnx.py --checkpoint runs/demo --size 32 --out runs/demo/model.onnx
	$(BIN)/python tools/complexity.py --table1
	$(BIN)/python tools/tvm_compile.py --checkpoint runs/demo --size 32 --time --out runs/demo/model.so
	$(BIN)/python score.py runs/demo --data runs/digits/val --library runs/demo/model.so

table2: $(STAMP)  ## TVM vs oneDNN vs ONNX Runtime timing, writes results/table2.*
	$(BIN)/python tools/table2.py

cpp: $(STAMP)  ## tools/cpp/run_library: runs a compiled library from C++ (TVM's runtime alone)
	$(MAKE) -C tools/cpp PYTHON=$(abspath $(BIN))/python

test: $(STAMP)  ## the test suite, whole files per process
	$(PYTEST) $(MARKS) $(addprefix --ignore=,$(VIDEO_TESTS))
	$(PYTEST) $(MARKS) $(VIDEO_TESTS)

test-all: MARKS = -m ""
test-all: test  ## the test suite with the slow tests (deep networks' backward)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[train,deploy,test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info tools/cpp/run_library
