# Set-up is automatic: every target that needs the virtual environment builds it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# torch's CPU wheel lies on disk here; without this, pip would fetch a multi-GB CUDA build.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup run test lint format bench bench-quick bench-quality bench-quality-quick clean \
	docs docs-serve wheel wheel-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) torch==2.13.0
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/qcode run transcripts_sample --codebook codebooks/west_partnership.yaml --out outputs

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python -m bench.run --pages 700 7000

bench-quick: setup
	$(BIN)/python -m bench.run --quick

# Coding quality against people's coding (NHS FFT benchmark); docs/quality.md shows the table.
bench-quality: setup
	$(BIN)/python -m bench.quality

bench-quality-quick: setup
	$(BIN)/python -m bench.quality --quick

# The documentation site (mkdocs.yml): strict, so a broken link or a missing page fails.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "Open site/index.html in a browser (or: make docs-serve)"

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# A wheel of qcode (dist/), and a check that it installs into a fresh virtual environment and
# codes the sample there (scripts/check_wheel.sh; CI runs it).
wheel: setup
	rm -rf dist
	$(BIN)/python -m build --wheel --outdir dist .

wheel-check: wheel
	FIND_LINKS="$(FIND_LINKS)" PYTHON="$(PYTHON)" scripts/check_wheel.sh dist/*.whl

clean:
	rm -rf $(VENV) .cache .prefect .pytest_cache .ruff_cache site dist build
