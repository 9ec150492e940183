# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when needed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CS := $(VENV)/bin/claimscore
STAMP := $(VENV)/.installed
DEMO_DIR := .claimscore/demo
DEMO_CLAIMS ?= 200000
DEMO_PORT ?= 3000

export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install browser demo test test-long lint format bench fuzz soak clean stop screenshots

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the locked environment into $(VENV) (first time ~1-2 min)"
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# the demo hashes personal identifiers with the public built-in secret (features/identity.py): it says
# so with CLAIMSCORE_DEMO=1, without which the service refuses that secret. Real claims: set
# CLAIMSCORE_IDENTITY_SECRET and load the history with it.
demo: export CLAIMSCORE_DEMO := 1
demo: $(STAMP)
	@mkdir -p $(DEMO_DIR)
	$(CS) generate --claims $(DEMO_CLAIMS) --seed 7 --out $(DEMO_DIR)/claims.parquet --new-claims 2000 --new-out $(DEMO_DIR)/new_claims.parquet
	$(CS) validate --data $(DEMO_DIR)/claims.parquet --source synthetic
	$(CS) train --data $(DEMO_DIR)/claims.parquet --source synthetic
	@# a rerun trains the same models again: promotion then refuses (not better), which is fine here
	-$(CS) promote --by demo --reason "make demo"
	$(CS) score --data $(DEMO_DIR)/new_claims.parquet --source synthetic --out $(DEMO_DIR)/scored.csv
	-@test -f $(DEMO_DIR)/server.pid && kill $$(cat $(DEMO_DIR)/server.pid) 2>/dev/null; sleep 1
	$(CS) history load --data $(DEMO_DIR)/claims.parquet --source synthetic
	@KEY=$$($(CS) keys create --role scorer --name demo) && \
	  INVESTIGATOR=$$($(CS) keys create --role investigator --name investigator) && \
	  ($(CS) serve --port $(DEMO_PORT) > $(DEMO_DIR)/server.log 2>&1 & echo $$! > $(DEMO_DIR)/server.pid) && \
	  $(PY) -m pipelines.demo --port $(DEMO_PORT) --claims $(DEMO_DIR)/new_claims.parquet --key $$KEY \
	    --investigator-key $$INVESTIGATOR
	@# monitoring over the decision log the demo just wrote (exit 3 when something alerts: shown, not fatal)
	-$(CS) monitor --since 1900-01-01 --out $(DEMO_DIR)/monitoring
	@echo
	@echo "Where to look:"
	@echo "  claims and validation report: $(DEMO_DIR)/claims.parquet, .claimscore/reports/"
	@echo "  scored new claims (scores, routes, reasons): $(DEMO_DIR)/scored.csv"
	@echo "  MLflow runs, metrics, plots, model card: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///.claimscore/mlflow.db --host 127.0.0.1"
	@echo "  the scoring service: http://127.0.0.1:$(DEMO_PORT)/ (log: $(DEMO_DIR)/server.log; stop: make stop)"
	@echo "  the investigators' queue: http://127.0.0.1:$(DEMO_PORT)/ui/queue (sign in with the investigator key above)"
	@echo "  monitoring (drift, quality, performance, fairness, KPIs): $(DEMO_DIR)/monitoring/report.html,"
	@echo "    http://127.0.0.1:$(DEMO_PORT)/ui/monitoring and the gauges on /metrics (claimscore_monitor_*)"
	@echo "  a demo: identifiers are hashed with the public demo secret; for real claims set CLAIMSCORE_IDENTITY_SECRET"

# the README's pictures of the pages, from the demo's running service (make demo first)
screenshots: $(STAMP) browser
	@KEY=$$($(CS) keys create --role investigator --name screenshots) && \
	  $(PY) -m pipelines.screenshots --port $(DEMO_PORT) --key $$KEY --out docs/screenshots

stop:
	-@test -f $(DEMO_DIR)/server.pid && kill $$(cat $(DEMO_DIR)/server.pid) 2>/dev/null && rm -f $(DEMO_DIR)/server.pid && echo "service stopped"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the pages' tests drive a real headless Chromium: Debian's package (Playwright's own download is not
# used). Installed here when missing; needs root (CI runs as root) or sudo.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "chromium is still missing at $(CHROMIUM): install Debian's chromium package"; exit 1; }

# two test processes (pytest-xdist), each taking whole modules: a module's server and models stay
# its own, and one module's training overlaps another's waiting on a server (8 min in a fresh clone here)
TEST_PROCESSES ?= 2

test: lint browser
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile

# the tests too long for make test (every MLproject entry point through mlflow run, offline)
test-long: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m long

bench: $(STAMP)
	$(PY) -m bench.run

# the reliability runs (not in `make bench`): ten thousand requests generated from the OpenAPI
# document, none answered 5xx (~10 min); ten minutes at 16 clients on every endpoint (~15 min)
fuzz: $(STAMP)
	$(PY) -m bench.run fuzz

soak: $(STAMP)
	$(PY) -m bench.run soak

clean:
	rm -rf .claimscore .pytest_cache
