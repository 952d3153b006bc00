# Everything runs inside .venv, created from the pinned requirements by `make setup`.
#   make demo                      offline main job: factory archives on a loopback mirror, all 85 variants
#   make test                      the test suite (what CI runs)
#   make convert-all [FAMILY=v1|v2|v3|v1-quant|v2-quant|v3-quant] [MIRROR=URL]  all 85 variants (or one family) from the manifest URLs
#   make convert VARIANT=1.0_224   one variant (V2 short name, or any archive stem)
#   make checkpoint CHECKPOINT=train_dir/ [ARGS="--name flowers --labels labels.txt"]   your own TF-slim checkpoint
#   make verify-all                re-verify every variant converted into weights/
#   make bench                     where the time goes: results/{bench.json,BENCH.md} (float, targets), results/quant/ (quantized)
#   make evaluate VARIANT=… IMAGENET=DIR [LABELS=FILE] [LIMIT=N]   ImageNet accuracy (results/ACCURACY.md)
#   make install-check             pip install . into a fresh venv, then the installed package's checks from outside the checkout
#   make clean                     remove work/, weights/, results/ (keeps the download cache)
PYTHON  ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MIRROR  ?=
JOBS    ?= 2
TEST_JOBS ?= 2
FAMILY  ?= all
RUNFLAGS = --jobs $(JOBS) $(if $(MIRROR),--mirror $(MIRROR))
# the official example notebook's image (vendored with the genuine artifacts)
PANDA   := tests/data/genuine/panda.jpg

.PHONY: setup test demo convert convert-all checkpoint verify-all evaluate bench install-check clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt constraints.txt pyproject.toml hatch_build.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# two test processes (pytest-xdist), a test file per process at a time: a file's module fixtures are built once
test: setup
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

demo: setup
	$(PY) -m convert demo --jobs $(JOBS) $(if $(PANDA),--image $(PANDA))

convert-all: setup
	$(PY) -m convert run $(FAMILY) $(RUNFLAGS)

convert: setup
	@test -n "$(VARIANT)" || { echo "error: set VARIANT, e.g. make convert VARIANT=1.0_224 (list: python models_to_load.py)"; exit 2; }
	$(PY) -m convert run $(VARIANT) $(RUNFLAGS)

checkpoint: setup
	@test -n "$(CHECKPOINT)" || { echo "error: set CHECKPOINT, e.g. make checkpoint CHECKPOINT=train_dir/ ARGS='--name flowers'"; exit 2; }
	$(PY) -m convert checkpoint $(CHECKPOINT) $(ARGS)

verify-all: setup
	@rc=0; n=0; for v in $$($(PY) models_to_load.py --names --converted weights); do \
	    n=$$((n+1)); $(PY) verify.py $$v $(if $(PANDA),--image $(PANDA)) || rc=1; done; \
	[ $$n -gt 0 ] || { echo "error: no converted variants in weights/ (run make convert-all first)"; exit 2; }; exit $$rc

evaluate: setup
	@test -n "$(VARIANT)" -a -n "$(IMAGENET)" || { echo "error: set VARIANT and IMAGENET, e.g. make evaluate VARIANT=1.0_224 IMAGENET=/data/ilsvrc2012/val"; exit 2; }
	$(PY) -m convert evaluate $(VARIANT) --imagenet-dir $(IMAGENET) $(if $(LABELS),--labels $(LABELS)) $(if $(LIMIT),--limit $(LIMIT))

# the float variants against the five targets, then the quantized ones apart (where their time goes; no probe)
bench: setup
	$(PY) -m convert bench --jobs $(JOBS)
	$(PY) -m convert bench v1-quant v2-quant v3-quant --jobs $(JOBS) --baseline 1 --probe-between 0 --results results/quant

# `pip install .` (the pinned versions as constraints) into a fresh venv in a temporary folder, then
# .ci/install_check.py run by that venv from outside the checkout; the demo's factory archive comes from
# this checkout's cache (MOBILENET_FIXTURES overrides). Needs the package index, like make setup.
install-check:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 2; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	echo "-- pip install . into a fresh venv ($$tmp/venv)" && start=$$(date +%s) && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet . -c constraints.txt && \
	echo "   ok ($$(( $$(date +%s) - start )) s)" && \
	cd "$$tmp" && MOBILENET_FIXTURES="$${MOBILENET_FIXTURES:-$(CURDIR)/cache/fixtures}" \
	    "$$tmp/venv/bin/python" "$(CURDIR)/.ci/install_check.py" --work "$$tmp/work"

clean:
	rm -rf work weights results .pytest_cache
