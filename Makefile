# The two commands of the README. Everything they need is installed here, into .venv.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SHARED  ?= ../shared
OUT     ?= out

.PHONY: install run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The demo: embedded broker, a worker, simulated telemetry with attacks, embedded ClickHouse;
# prints alerts as they fire and a summary, then exits (ramparts dev --follow keeps it running).
run: install
	$(VENV)/bin/ramparts dev --dir $(OUT)/dev

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/ramparts bench parse
	$(VENV)/bin/ramparts bench throughput

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
