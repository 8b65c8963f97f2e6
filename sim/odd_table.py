"""The parameter table of docs/ODD.md, generated from sim.parameters so the two never drift apart.

`python -m sim.odd_table` rewrites the block between BEGIN and END in docs/ODD.md;
tests/test_odd.py fails when the block and `parameter_table()` differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sim.parameters import PARAMETERS, Param

BEGIN = "<!-- parameters:begin -->"
END = "<!-- parameters:end -->"
ODD_PATH = Path(__file__).resolve().parent.parent / "docs" / "ODD.md"
COLUMNS = ("name", "default", "range", "unit", "meaning", "source")


def _cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _row(p: Param) -> str:
    """One table row for a parameter."""
    cells = (f"`{p.name}`", f"{p.default:g}", f"{p.low:g} to {p.high:g}", p.unit, p.meaning, p.source)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def parameter_table() -> str:
    """The markdown table of every parameter in sim.parameters.PARAMETERS, in declaration order."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [_row(p) for p in PARAMETERS]
    return "\n".join(lines) + "\n"


def generated_block(text: str) -> str:
    """The text between the BEGIN and END markers of a document (without the markers)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document needs the markers {BEGIN} and {END}, in that order")
    return text[start + len(BEGIN):end].strip("\n") + "\n"


def refresh(text: str) -> str:
    """The document with the block between the markers replaced by the current parameter table."""
    generated_block(text)  # checks the markers
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    return text[:start] + "\n" + parameter_table() + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the parameter block of docs/ODD.md (or of the file given as the only argument)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else ODD_PATH
    try:
        text = path.read_text(encoding="utf-8")
        new = refresh(text)
    except (OSError, ValueError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: parameter table refreshed ({len(PARAMETERS)} parameters)")
    else:
        print(f"{path}: parameter table already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
