"""Where the project's own files are: resolved from the package's location, never from the current folder,
so `sim` and `AdherenceModel()` work from any folder. Outputs (results/, --out) stay relative to the
folder the user works in."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the folder holding sim/, scenarios/ and docs/
SCENARIOS = PROJECT_ROOT / "scenarios"
DEFAULT_SCENARIO = SCENARIOS / "standard_prescription.yaml"
DEFAULT_TARGETS = SCENARIOS / "trials" / "targets.yaml"


def scenario_path(value: str | Path) -> Path:
    """A scenario file: `value` itself if it exists from here, else the same relative path under the project
    root, else a scenario of the library by name ('gradual_titration'); else `value` unchanged, for the
    loader to report as missing."""
    path = Path(value)
    if path.exists() or path.is_absolute():
        return path
    for candidate in (PROJECT_ROOT / path, SCENARIOS / path, SCENARIOS / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    return path
