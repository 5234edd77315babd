# Set-up and entry points. Every target first builds .venv (Python 3.11) with the
# versions pinned in constraints.txt; it is rebuilt when setup.py or the pins change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test clean

demo: $(STAMP)  ## the main job on the embedded default
	$(BIN)/python tools/complexity.py

test: $(STAMP)  ## the test suite
	$(BIN)/python -m pytest -q

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info
