"""The base of the scenario language: strict pydantic sections, the error type, and a safe YAML reader.

Every error names the file, the field path, the bad value and what is allowed (`ScenarioError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from sim import inputs
from sim.cli_defaults import MAX_REPLICATES  # noqa: F401 - re-exported
from sim.vocabulary import TRAITS

TraitName = Literal[TRAITS]  # type: ignore[valid-type]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
MAX_NAME = 80  # characters: names are stored in varchar(80) columns and drawn in figures
# a name that fits every store backend and figure: letters, digits, '_', '.', '-' (no spaces, '$' or NUL)
Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=MAX_NAME)]
MAX_TEXT = 20_000  # characters of free text (descriptions, sources, findings)
Text = Annotated[str, Field(max_length=MAX_TEXT)]
MAX_SEED = 2**64 - 1  # seeds are 0 to 2^64 - 1
MAX_ARMS = 50  # arms in one scenario
MAX_EXTENDS = 10  # arms in one chain of `extends` (a extends b extends c ...)
# pairs written as YAML lists: strict types would refuse a list for a tuple (the items stay strict)
FloatPair = Annotated[tuple[float, float], Field(strict=False)]
TraitPair = Annotated[tuple[TraitName, TraitName], Field(strict=False)]


def first_repeat(items: list) -> Any | None:
    """The first item that occurs more than once, else None (for names and ids that must be unique)."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message says where and why."""

    def __init__(self, file: str | Path, field: str, value: Any, allowed: str):
        self.file, self.field, self.value, self.allowed = str(file), field, value, allowed
        shown_field = field if len(field) <= 2 * inputs.SHOWN else field[:2 * inputs.SHOWN] + "…"
        where = f"{self.file}: {shown_field}" if field else self.file
        shown = ": " if value is NO_VALUE else f": got {inputs.short_repr(value)}; "
        if len(allowed) > MAX_ALLOWED:  # a list of names, say: the message stays a line or two
            allowed = allowed[:MAX_ALLOWED] + "…"
        super().__init__(f"{where}{shown}{allowed}")

    def __reduce__(self):  # so that an error raised in a worker process reaches the caller intact
        return (type(self), (self.file, self.field, self.value, self.allowed))


NO_VALUE = object()
MAX_ALLOWED = 600  # characters of the "what is allowed" part of an error message


def _allows_bool(annotation: Any) -> bool:
    return annotation is bool or bool in get_args(annotation)


class Strict(BaseModel):
    """Base for scenario sections: unknown keys are refused with the list of allowed ones, and types are
    strict: a quoted number ('200') is text, not a number (a list for a pair is fine: `FloatPair`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if key not in cls.model_fields:
                    raise PydanticCustomError("unknown_key", "unknown key; allowed keys: {allowed}",
                                              {"key": key, "allowed": ", ".join(cls.model_fields)})
                if isinstance(value, bool) and not _allows_bool(cls.model_fields[key].annotation):
                    raise PydanticCustomError("bool_not_number", "expected a number, not true/false",
                                              {"key": key, "value": value})
        return data



def read_yaml(path: str | Path, what: str = "file") -> tuple[str, Any]:
    """The text of a YAML file and its data, read safely (sim.inputs: size cap, regular files, nesting,
    aliases, tags, YAML 1.2 types); a ScenarioError for a missing, unreadable, refused or malformed file."""
    try:
        text = inputs.read_text(path, what)
        return text, inputs.load_yaml(text, path)
    except inputs.InputError as e:
        raise ScenarioError(path, e.where, NO_VALUE, e.allowed) from None
