# The two commands of the README. Everything they need is installed here, into .venv.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SHARED  ?= ../shared
SAMPLES := $(wildcard $(SHARED)/data/samples/*/*.txt $(SHARED)/data/samples/*/*.log)
OUT     ?= out

.PHONY: install run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# For now: parse the bundled examples and the upstream samples (../shared, when it is there),
# print the summary and the first event of each kind.
run: install
	@mkdir -p $(OUT)
	@rm -f $(OUT)/dead-letter.jsonl
	$(VENV)/bin/ramparts parse examples/* $(SAMPLES) --dead-letter $(OUT)/dead-letter.jsonl > $(OUT)/events.jsonl
	@echo "normalized events: $(OUT)/events.jsonl ($$(wc -l < $(OUT)/events.jsonl) lines); first of each kind:"
	@$(PY) -c "import orjson; seen=set(); [(seen.add(e['kind']), print(l.decode().strip()[:300])) for l in open('$(OUT)/events.jsonl','rb') for e in [orjson.loads(l)] if e['kind'] not in seen]"

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/ramparts bench parse

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
