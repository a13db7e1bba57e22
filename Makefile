# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean wheelhouse

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/collector demo

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collector adapters api tests bench
	$(BIN)/mypy collector adapters api

# A folder of wheels of the collector and every dependency, for a box without internet:
#   pip install --no-index --find-links wheelhouse retrofit-collector   (deploy/README.md)
# For another kind of box, name its pip platform, e.g. a Raspberry Pi (64-bit):
#   make wheelhouse PLATFORM=manylinux2014_aarch64 PYVERSION=3.11
WHEELHOUSE ?= wheelhouse
PYVERSION ?= 3.11
wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(WHEELHOUSE) .
ifdef PLATFORM
	$(BIN)/pip download --quiet --only-binary=:all: --platform $(PLATFORM) \
		--python-version $(PYVERSION) --dest $(WHEELHOUSE) $(WHEELHOUSE)/retrofit_collector-*.whl
else
	$(BIN)/pip wheel --quiet --wheel-dir $(WHEELHOUSE) $(WHEELHOUSE)/retrofit_collector-*.whl
endif
	@echo "$(WHEELHOUSE): $$(ls $(WHEELHOUSE) | wc -l) wheels; on the box:" \
		"pip install --no-index --find-links $(WHEELHOUSE) retrofit-collector"

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) demo-data test-artifacts
