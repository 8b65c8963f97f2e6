"""Names and defaults the command line shows in its help, declared here so that `sim --help` needs none
of the heavy modules that use them (each of those imports its value from here)."""

from __future__ import annotations

from pathlib import Path

from sim.paths import DEFAULT_TARGETS  # noqa: F401 - the project's targets file, from the project root

EXECUTORS = ("serial", "processes", "dask")  # where runs execute (sim.runs.runner)
DEFAULT_URL = "sqlite:///results/sim.db"  # the results store (sim.runs.store)
RECORD_OPTIONS = ("participants-weekly",)  # what else a run may store (sim.runs.store)
REPORT_OUT = Path("results/report.html")  # sim.analysis.report
VALIDATION_OUT = Path("results/validation.json")  # sim.analysis.report
LOTO_OUT = Path("results/loto.json")  # leave-one-trial-out validation (sim.analysis.loto), shown by the report
MAX_REPLICATES = 100_000  # the most replicates a scenario may ask for (sim.schema)
EXPLORE_SCENARIO = Path("scenarios/standard_prescription.yaml")  # sim explore's default (sim.explore_model)
EXPLORE_PORT = 8765  # sim explore's default port (Solara's own default)
