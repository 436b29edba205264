# make demo: set up .venv and render the bundled example reports.
# make test: install the dev extras and run the whole test suite.
# make cards: the examples' MODEL_CARD.md from their audits (run with --full).
# make bench: time every benchmark against its baseline (prints ratios and the machine load).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
EXAMPLES := adult_mlp digits_cnn macro_lstm

.PHONY: demo cards test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev,onnx,ray]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	@for ex in $(EXAMPLES); do \
		echo "== auditing examples/$$ex"; \
		$(BIN)/audit run examples/$$ex/audit.toml --out reports/$$ex --overwrite --full || exit $$?; \
	done

# The examples' model cards: each audit run with --full (no time budget, so the results do not
# depend on this machine's speed), then its card from results.json and the [card] table.
cards: install
	@for ex in $(EXAMPLES); do \
		echo "== auditing examples/$$ex (--full)"; \
		$(BIN)/audit run examples/$$ex/audit.toml --out reports/$$ex --overwrite --full || exit $$?; \
		$(BIN)/audit card reports/$$ex/results.json --config examples/$$ex/audit.toml \
			--out examples/$$ex/MODEL_CARD.md || exit $$?; \
	done

test: install-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Every benchmark, each after the machine's load average and cores (benchmarks/_common.py).
# scale_limits.py runs the parts README quotes (its csv part writes a 5M-row file: by hand);
# the statistical simulations (fairness_coverage.py, permutation_size.py) run by hand too.
BENCH_BY_HAND := benchmarks/_common.py benchmarks/scale_limits.py benchmarks/fairness_coverage.py benchmarks/scale_ray.py \
	benchmarks/permutation_size.py
BENCH := $(filter-out $(BENCH_BY_HAND),$(sort $(wildcard benchmarks/*.py))) \
	"benchmarks/scale_limits.py pairs" "benchmarks/scale_limits.py fairness"

bench: install
	@for b in $(BENCH); do echo "== $$b"; $(BIN)/python benchmarks/_common.py; \
		$(BIN)/python $$b || exit $$?; done

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
