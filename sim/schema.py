"""The base of the scenario language: strict pydantic sections, the error type, and a safe YAML reader.

Every error names the file, the field path, the bad value and what is allowed (`ScenarioError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from sim.cli_defaults import MAX_REPLICATES  # noqa: F401 - re-exported
from sim.vocabulary import TRAITS

TraitName = Literal[TRAITS]  # type: ignore[valid-type]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


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
        where = f"{self.file}: {field}" if field else self.file
        shown = ": " if value is NO_VALUE else f": got {value!r}; "
        super().__init__(f"{where}{shown}{allowed}")

    def __reduce__(self):  # so that an error raised in a worker process reaches the caller intact
        return (type(self), (self.file, self.field, self.value, self.allowed))


NO_VALUE = object()


def _allows_bool(annotation: Any) -> bool:
    return annotation is bool or bool in get_args(annotation)


class Strict(BaseModel):
    """Base for scenario sections: unknown keys are refused with the list of allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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



class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key repeated in one mapping (plain YAML keeps the last silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first[key].line + 1}); each key may "
                    "appear once in a mapping", key_node.start_mark)
            first[key] = key_node.start_mark
        except TypeError:  # an unhashable key: SafeLoader refuses it itself
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path, what: str = "file") -> tuple[str, Any]:
    """The text of a YAML file and its data; a ScenarioError for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(path, "", NO_VALUE, f"{what} not found") from None
    except IsADirectoryError:
        raise ScenarioError(path, "", NO_VALUE, f"is a folder, not a {what}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(path, "", NO_VALUE, f"not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None
    except OSError as e:
        raise ScenarioError(path, "", NO_VALUE, f"cannot read the {what} ({e.strerror or e})") from None
    try:
        return text, yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(path, where, NO_VALUE, f"malformed YAML: {problem}") from None

