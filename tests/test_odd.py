"""docs/ODD.md stays in step with the code: the parameter table, and no undocumented coefficient."""

from __future__ import annotations

import re
from pathlib import Path

from sim import odd_table
from sim.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
DYNAMICS = ROOT / "sim" / "model" / "dynamics.py"
KERNEL = ROOT / "sim" / "model" / "kernel.py"  # the same equations, compiled
# Coefficients attributes that are not model parameters but worked out from them: the Weibull scale of
# episode length (from its median and shape) and the weekday pattern of a self-directed plan.
NOT_PARAMETERS = {"episode_scale", "own_pattern"}


def test_odd_parameter_table_matches_parameters():
    """The generated block in docs/ODD.md equals the table rendered from sim.parameters now."""
    block = odd_table.generated_block(odd_table.ODD_PATH.read_text(encoding="utf-8"))
    assert block == odd_table.parameter_table(), (
        "docs/ODD.md's parameter table is out of date with sim/parameters.py; "
        "run `python -m sim.odd_table` to refresh it")


def test_every_parameter_is_in_the_table():
    """Each parameter has exactly one row, in declaration order."""
    names = re.findall(r"^\| `([^`]+)` \|", odd_table.parameter_table(), flags=re.M)
    assert names == [p.name for p in PARAMETERS]


def test_equations_use_only_documented_coefficients():
    """Every `p.<group>_<name>` in sim/model/dynamics.py is a parameter of sim.parameters (dotted name)."""
    attribute = {p.name.replace(".", "_"): p.name for p in PARAMETERS}
    assert len(attribute) == len(PARAMETERS), "two parameters map to the same attribute name"
    used = set(re.findall(r"\bp\.([A-Za-z_][A-Za-z0-9_]*)",
                          DYNAMICS.read_text(encoding="utf-8") + KERNEL.read_text(encoding="utf-8")))
    assert len(used) > 20, "the regex no longer finds the coefficients in sim/model/dynamics.py"
    undocumented = sorted(used - attribute.keys() - NOT_PARAMETERS)
    assert not undocumented, (
        f"sim/model/dynamics.py uses coefficients that are not in sim/parameters.py: {undocumented}; "
        "add them to PARAMETERS (with default, range, unit, meaning, source) and run `python -m sim.odd_table`")


def test_refresh_rewrites_only_the_block(tmp_path):
    """`python -m sim.odd_table FILE` replaces a stale block, keeps the rest and is idempotent."""
    doc = tmp_path / "ODD.md"
    doc.write_text(f"intro\n{odd_table.BEGIN}\nstale\n{odd_table.END}\noutro\n", encoding="utf-8")
    assert odd_table.main([str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith(f"{odd_table.END}\noutro\n")
    assert odd_table.generated_block(text) == odd_table.parameter_table()
    assert odd_table.main([str(doc)]) == 0 and doc.read_text(encoding="utf-8") == text


def test_refresh_refuses_a_document_without_markers(tmp_path, capsys):
    """A document without the markers is left alone and the error names them (exit code 2)."""
    doc = tmp_path / "ODD.md"
    doc.write_text("no markers here\n", encoding="utf-8")
    assert odd_table.main([str(doc)]) == 2
    assert "parameters:begin" in capsys.readouterr().err
    assert doc.read_text(encoding="utf-8") == "no markers here\n"
