# Exercise-adherence virtual trials. `make run` and `make test` set everything up by themselves.
SHELL := /bin/sh
VENV  := .venv
PY    := $(VENV)/bin/python
SIM   := $(VENV)/bin/sim
SCENARIO ?= scenarios/standard_prescription.yaml
SIM_ARGS ?=
# make run records the weekly panel so that every figure of the report can be drawn
RECORD ?= participants-weekly
# the scenario's name is its file's stem; DB=URL points run, report and plots at another store
NAME  := $(basename $(notdir $(SCENARIO)))
REPORT ?= results/report.html
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

.PHONY: run test venv scenarios validate calibrate bench clean help plots report sweep power explore

help:
	@echo "make run        run the default scenario ($(SCENARIO)), print the summary, write the report"
	@echo "make report     write $(REPORT) for $(NAME) from the results store (one self-contained HTML file)"
	@echo "make plots      write every figure of $(NAME) as PNG and SVG into results/figures"
	@echo "make test       run the test suite"
	@echo "make scenarios  run every scenario in scenarios/"
	@echo "make sweep      parameter sweep (default: Morris screening of the main uncertain parameters, ~4 min);"
	@echo "                SWEEP=scenarios/sweeps/NAME.yaml for another (docs/sweeps.md)"
	@echo "make power      power curve over sample sizes (default: partner vs solo exercise, ~2 min)"
	@echo "make explore    browser explorer of $(SCENARIO) at http://127.0.0.1:$(PORT) (PORT=N, SCENARIO=...)"
	@echo "make validate   check the model against published trials (scenarios/trials/targets.yaml)"
	@echo "make calibrate  fit the free parameters to those targets (Optuna; ~10 min on 2 cores)"
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
	$(SIM) report --scenario $(NAME) $(DB_ARG) --out $(REPORT)

report: venv
	$(SIM) report --scenario $(NAME) $(DB_ARG) --out $(REPORT)

plots: venv
	$(SIM) report --scenario $(NAME) $(DB_ARG) --figures results/figures

scenarios: venv
	$(SIM) run scenarios/*.yaml $(SIM_ARGS)

test: venv
	$(PY) -m pytest

clean:
	rm -rf $(VENV) results/*.db results/*.db-* results/figures results/report.html

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

bench: venv
	$(SIM) bench --out results/bench.json
