# Every routine task is a target here, so the README's commands and CI's are the same commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Torch comes from this machine's local wheels when pinned exactly; a range would pull a multi-GB CUDA build.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

SAMPLE_DIR ?= build/sample
SAMPLE := $(SAMPLE_DIR)/sample.warc.gz
INPUT ?=
# CRAWL=CC-MAIN-YYYY-WW reads that Common Crawl crawl instead of INPUT (CC_BASE_URL: a mirror, or s3://commoncrawl/).
CRAWL ?=
CC_BASE_URL ?=
CRAWL_SOURCE ?= warc
CRAWL_FILES ?=
SEGMENT_RANGE ?=
OUTPUT ?= build/corpus
PRESET ?= align
RUNNER ?= DirectRunner
BEAM_ARGS ?=
PROJECT ?=
REGION ?=
BUCKET ?=
PYTEST_ARGS ?=
# DRY_RUN=1: build every stage's graph (translated for Dataflow with RUNNER=DataflowRunner), submit and write nothing.
DRY_RUN ?=

ifeq ($(RUNNER),DataflowRunner)
  RUNNER_ARGS := --runner=DataflowRunner --project=$(PROJECT) --region=$(REGION) \
    --temp_location=gs://$(BUCKET)/tmp --staging_location=gs://$(BUCKET)/staging --setup_file=$(CURDIR)/setup.py
else
  RUNNER_ARGS := --runner=$(RUNNER)
endif
ifneq ($(strip $(DRY_RUN)),)
  RUNNER_ARGS += --dry_run=True
endif

.PHONY: venv install install-test build-corpus sample stats test test-fast lint format bench train demo-compositional serve clean chromium check-c

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py pipeline/html/_tagscan.c
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(SAMPLE): $(VENV)/.installed
	$(BIN)/python -m pipeline make-sample --output $(SAMPLE_DIR)

# The sample's stand-in evaluation set, indexed so filter-image removes its near-duplicates from the corpus.
$(SAMPLE_DIR)/eval_index.parquet: $(SAMPLE)
	$(BIN)/python -m pipeline eval-index --input $(SAMPLE_DIR)/eval --output $@

sample: $(SAMPLE) $(SAMPLE_DIR)/eval_index.parquet

# The main job: on the bundled sample unless CRAWL or INPUT is given; BEAM_ARGS pass through to Beam.
CRAWL_ARGS := --crawl '$(CRAWL)' --source $(CRAWL_SOURCE) $(if $(strip $(CC_BASE_URL)),--cc-base-url '$(CC_BASE_URL)') \
  $(if $(strip $(CRAWL_FILES)),--files $(CRAWL_FILES)) $(if $(strip $(SEGMENT_RANGE)),--segment-range '$(SEGMENT_RANGE)')
ifneq ($(strip $(CRAWL)),)
build-corpus: $(VENV)/.installed
	$(BIN)/python -m pipeline build-corpus $(CRAWL_ARGS) --output '$(OUTPUT)' --preset $(PRESET) $(RUNNER_ARGS) $(BEAM_ARGS)
else ifeq ($(strip $(INPUT)),)
build-corpus: $(SAMPLE) $(SAMPLE_DIR)/eval_index.parquet
	$(BIN)/python -m pipeline build-corpus --input '$(SAMPLE)' --output '$(OUTPUT)' --preset $(PRESET) \
	  --eval-index '$(SAMPLE_DIR)/eval_index.parquet' $(RUNNER_ARGS) $(BEAM_ARGS)
else
build-corpus: $(VENV)/.installed
	$(BIN)/python -m pipeline build-corpus --input '$(INPUT)' --output '$(OUTPUT)' --preset $(PRESET) $(RUNNER_ARGS) $(BEAM_ARGS)
endif

stats: $(VENV)/.installed
	$(BIN)/python -m pipeline stats '$(OUTPUT)'

# The HTML report's test renders it in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(VENV)/.installed-test chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop (about a minute): ruff, then the tests that need neither torch, Airflow, a browser nor more than ~20 s
# (markers from tests/conftest.py), with torch made unimportable so the pipeline's tests keep working without it.
FAST_MARKERS := not slow and not needs_torch and not needs_airflow and not needs_browser
test-fast: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -p tests.fixtures.without_torch -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

# The C tag scanner built with AddressSanitizer + UndefinedBehaviorSanitizer, then its tests (real pages, generated
# hostile markup) run against that build: out-of-bounds reads or undefined behaviour fail loudly. PYTHONMALLOC=malloc
# puts Python's bytes objects under ASan's red zones (pymalloc's arenas would hide overreads); -s lets a sanitizer
# report reach the terminal. Needs gcc's libasan/libubsan (Debian: part of gcc); not in `make test`, which must pass
# where they are missing.
ASAN_BUILD := build/asan/_tagscan.so
check-c: $(VENV)/.installed-test
	mkdir -p $(dir $(ASAN_BUILD))
	$(CC) -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
		-I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
		pipeline/html/_tagscan.c -o $(ASAN_BUILD)
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
		LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
		ALTCORPUS_TAGSCAN_BUILD=$(ASAN_BUILD) $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/pipeline/html/test_tagscan.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# bench/search.py at 10^5 and 10^6 embeddings with numpy, exact and IVF indexes (4.4 CPU min, 14 min wall on a
# loaded 2-core box); HNSW builds take over an hour at 10^6 there: SEARCH_BENCH_ARGS= runs every kind,
# SEARCH_BENCH_ARGS="--kinds flat,ivf --sizes 100000" the small size only.
SEARCH_BENCH_ARGS ?= --kinds flat,ivf
# bench/scale.py: build-corpus on simulated crawls 10x apart, 2 workers (100 MB: 5.6 min wall on a loaded 2-core box;
# 1 GB, not yet measured there, about 10x that plus ~10 CPU min to generate); SCALE_BENCH_ARGS='--sizes 10MB 100MB'
# is the quick pair (about 8 min).
SCALE_BENCH_ARGS ?= --sizes 100MB 1GB
bench: $(VENV)/.installed-test
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/filter_text.py
	$(BIN)/python bench/fetch.py
	$(BIN)/python bench/filter_image.py
	$(BIN)/python bench/shards.py
	$(BIN)/python bench/stats.py
	$(BIN)/python bench/search.py $(SEARCH_BENCH_ARGS)
	$(BIN)/python bench/scale.py $(SCALE_BENCH_ARGS)

train: $(VENV)/.installed-test
	$(BIN)/python -m training.train --corpus '$(OUTPUT)' --config training/configs/tiny-cpu.yaml

# Alt text vs enhanced captions on the generated shapes world (training/shapes_world.py): the same tiny model trained
# twice on CPU, both evaluated on swapped-attribute and swapped-relation negatives; prints the accuracies side by side.
demo-compositional: $(VENV)/.installed-test
	$(BIN)/python -m training.shapes_world --output build/demo-compositional

# The search page over an index built by training.embed + training.index (training/README.md); 127.0.0.1 only.
INDEX ?= build/search/index
PORT ?= 8000
serve: $(VENV)/.installed-test
	$(BIN)/python -m training.serve --index '$(INDEX)' --corpus '$(OUTPUT)' --port $(PORT)

clean:
	rm -rf build
