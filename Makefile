# Exercise-adherence virtual trials. `make run` and `make test` set everything up by themselves.
SHELL := /bin/sh
VENV  := .venv
PY    := $(VENV)/bin/python
SIM   := $(VENV)/bin/sim
DEFAULT_SCENARIO := scenarios/standard_prescription.yaml
# where make's outputs go; results/.last_scenario remembers what `make run` ran last
RESULTS ?= results
LAST := $(RESULTS)/.last_scenario
# make report / make plots: SCENARIO=... if given, else the scenario `make run` ran last, else the default
ifeq ($(filter command line environment,$(origin SCENARIO)),)
SHOWN := $(or $(shell cat $(LAST) 2>/dev/null),$(DEFAULT_SCENARIO))
else
SHOWN := $(SCENARIO)
endif
SCENARIO ?= $(DEFAULT_SCENARIO)
SIM_ARGS ?=
# make run records the weekly panel so that every figure of the report can be drawn
RECORD ?= participants-weekly
# the scenario's name is its file's stem; DB=URL points run, report and plots at another store
NAME  := $(basename $(notdir $(SCENARIO)))
SHOWN_NAME := $(basename $(notdir $(SHOWN)))
# the default scenario's report is results/report.html; any other scenario X gets results/X.html
report_of = $(if $(filter $(1),$(basename $(notdir $(DEFAULT_SCENARIO)))),$(RESULTS)/report.html,$(RESULTS)/$(1).html)
REPORT ?= $(call report_of,$(SHOWN_NAME))
RUN_REPORT := $(if $(filter command line environment,$(origin REPORT)),$(REPORT),$(call report_of,$(NAME)))
DB ?=
DB_ARG := $(if $(DB),--db $(DB))
# make sweep runs the default screening; SWEEP=scenarios/sweeps/NAME.yaml runs another
SWEEP ?= scenarios/sweeps/screening.yaml
# make power: the sample-size curve of one comparison (POWER_ARGS to change it)
POWER_SCENARIO ?= scenarios/exercise_partner.yaml
POWER_ARGS ?= --arm partner --reference solo --sizes 50,100,200,400 --replicates 100
JOBS ?= 2
# make explore serves the browser explorer on 127.0.0.1:PORT
PORT ?= 8765

.PHONY: run test venv scenarios validate calibrate loto bench clean help plots report screenshot sweep power explore

help:
	@echo "make run        run $(SCENARIO), print the summary, write $(RUN_REPORT) (SCENARIO=X: $(RESULTS)/X.html)"
	@echo "make report     write $(REPORT) for $(SHOWN_NAME) (the last scenario make run ran, or SCENARIO=...)"
	@echo "make plots      write every figure of $(SHOWN_NAME) as PNG and SVG into $(RESULTS)/figures"
	@echo "make screenshot render $(REPORT) to $(basename $(REPORT)).png in headless Chromium"
	@echo "make test       run the test suite"
	@echo "make scenarios  run every scenario in scenarios/"
	@echo "make sweep      parameter sweep (default: Morris screening of the main uncertain parameters, ~4 min);"
	@echo "                SWEEP=scenarios/sweeps/NAME.yaml for another (docs/sweeps.md)"
	@echo "make power      power curve over sample sizes (default: partner vs solo exercise, ~2 min)"
	@echo "make explore    browser explorer of $(SCENARIO) at http://127.0.0.1:$(PORT) (PORT=N, SCENARIO=...)"
	@echo "make validate   calibration fit (and validation of held-out targets) against published trials"
	@echo "make calibrate  fit the free parameters to the targets not held out (Optuna; hours on 2 cores)"
	@echo "make loto       leave-one-trial-out validation: refit without each trial, check it (~2-3 h on 2 cores)"
	@echo "make bench      speed and memory benchmarks side by side (~5 min), written to results/bench.json"
	@echo "make clean      remove the venv and generated results"

$(VENV)/.installed: pyproject.toml
	@PYBIN=$$(./scripts/find-python.sh) || exit 1; \
	  echo "using $$PYBIN"; \
	  "$$PYBIN" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools warns that sim/ sits next to pyproject.toml: that is this project's layout, not a problem
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[test,explore]'
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(SIM) run $(SCENARIO) $(DB_ARG) --record $(RECORD) $(SIM_ARGS)
	@mkdir -p $(RESULTS) && echo "$(SCENARIO)" > $(LAST)
	$(SIM) report --scenario $(NAME) $(DB_ARG) --out $(RUN_REPORT)

report: venv
	$(SIM) report --scenario $(SHOWN_NAME) $(DB_ARG) --out $(REPORT)

plots: venv
	$(SIM) report --scenario $(SHOWN_NAME) $(DB_ARG) --figures $(RESULTS)/figures

# the report as the reader sees it: headless Chromium (Debian: apt-get install chromium)
CHROMIUM ?= $(shell command -v chromium chromium-browser google-chrome 2>/dev/null | head -n 1)
screenshot: venv
	@test -f $(REPORT) || { echo "no $(REPORT): run make run (or make report) first"; exit 2; }
	@test -n "$(CHROMIUM)" || { echo "no Chromium found: apt-get install chromium, or CHROMIUM=/path/to/browser"; exit 2; }
	$(PY) -m sim.analysis.screenshot $(REPORT) --browser $(CHROMIUM) --out $(basename $(REPORT)).png

scenarios: venv
	$(SIM) run scenarios/*.yaml $(SIM_ARGS)

test: venv
	$(PY) -m pytest

clean:
	rm -rf $(VENV) results/*.db results/*.db-* results/figures results/*.html results/.last_scenario

sweep: venv
	$(SIM) sweep $(SWEEP) --jobs $(JOBS) $(DB_ARG) $(SIM_ARGS)

power: venv
	$(SIM) power $(POWER_SCENARIO) $(POWER_ARGS) --jobs $(JOBS) $(DB_ARG)

validate: venv
	$(SIM) validate --jobs 2

calibrate: venv
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[calibrate]'
	$(PY) -m sim.analysis.calibration --trials 120 --replicates 12 --jobs 2 --out results/calibration.json

explore: venv
	$(SIM) explore $(SCENARIO) --port $(PORT)

loto: venv
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[calibrate]'
	$(PY) -m sim.analysis.loto --trials 60 --replicates 8 --jobs 2 --out results/loto.json

bench: venv
	$(SIM) bench --out results/bench.json
