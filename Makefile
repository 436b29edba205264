# make demo: set up .venv and render the bundled example reports.
# make test: install the dev extras and run the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
EXAMPLES := adult_mlp digits_cnn macro_lstm

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev,onnx]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	@for ex in $(EXAMPLES); do \
		echo "== auditing examples/$$ex"; \
		$(BIN)/audit run examples/$$ex/audit.toml --out reports/$$ex --overwrite || exit $$?; \
	done

test: install-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit $$?; done

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
