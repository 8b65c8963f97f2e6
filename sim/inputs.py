"""Reading input files safely: a size cap, regular files only, and a YAML loader that refuses what a
scenario file never needs (deep nesting, alias bombs, non-plain tags, YAML 1.1 surprises, invalid text).

Every refusal is an `InputError` naming the file, where in it (line and column when known) and what is
allowed; sim.schema turns it into a ScenarioError. docs/reliability.md lists the limits.
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024  # scenario, sweep, targets and validation-record files
MAX_DEPTH = 40  # levels of nested mappings and lists, aliases expanded
MAX_NODES = 100_000  # values in a document once its aliases are expanded
MAX_INT_DIGITS = 40  # digits of any integer written in a file (the schema bounds each field further)
SHOWN = 80  # characters of a bad value shown in an error message


class InputError(Exception):
    """A file that cannot be read as input: `where` in it and why (`allowed`)."""

    def __init__(self, path: str | Path, where: str, allowed: str):
        self.path, self.where, self.allowed = str(path), where, allowed
        super().__init__(f"{self.path}: {where + ': ' if where else ''}{allowed}")


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def read_bounded(path: str | Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; an InputError for anything else (a folder, a
    device or pipe such as /dev/zero, a file too large), never reading more than `limit` + 1 bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except FileNotFoundError:
        raise InputError(path, "", f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, "", f"is a folder, not a {what}") from None
    except OSError as e:
        raise InputError(path, "", f"cannot read the {what} ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputError(path, "", f"is a folder, not a {what}")
        if not stat.S_ISREG(mode):
            raise InputError(path, "", f"is not a regular file (a device, pipe or socket); give a {what} on disk")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise InputError(path, "", f"cannot read the {what} ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(path, "", f"the {what} is larger than {_size(limit)}, the most allowed")
    return data


def read_text(path: str | Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> str:
    """A bounded regular file (see read_bounded) decoded as UTF-8."""
    data = read_bounded(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, "", f"not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None


_repr = reprlib.Repr(maxlevel=2, maxdict=4, maxlist=4, maxtuple=4, maxset=4, maxstring=SHOWN, maxother=SHOWN)
_repr.fillvalue = "…"


def short_repr(value: Any, limit: int = SHOWN) -> str:
    """repr(value) cut to about `limit` characters without ever building the whole repr (a huge string, a
    deep or aliased structure, an integer of thousands of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * SHOWN:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits>"
    if isinstance(value, str):
        text = repr(value[:limit]) + (f"… ({len(value):,} characters)" if len(value) > limit else "")
    else:
        text = _repr.repr(value)
    return text if len(text) <= limit + 40 else text[:limit] + "…"


# ------------------------------------------------------------------ YAML
TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge")}
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class Refused(yaml.YAMLError):
    """Something a safe input file never holds, at a place in the file."""

    def __init__(self, problem: str, mark=None):
        self.problem, self.problem_mark = problem, mark
        super().__init__(problem)


class SafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with the YAML 1.2 core schema (so `1:30`, `yes`, `012` and dates stay text, and
    the schema refuses them where a number or true/false is needed), a nesting limit checked before any
    recursion, aliases bounded by the size of what they expand to, plain tags only, valid text only, and
    each key at most once per mapping. Merge keys (`<<: *base`) work."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        """Compose one node, refusing nesting deeper than MAX_DEPTH before recursing further."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(f"nested deeper than {MAX_DEPTH} levels, the most allowed", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        """The document's data, checked as a graph (tags, expanded size and depth, cycles) before it is built."""
        node = self.get_single_node()
        if node is None:
            return None
        check_graph(node)
        return self.construct_document(node)

    def construct_yaml_str(self, node):
        """A string, refused if it holds NUL, control characters or a lone surrogate (not valid text)."""
        value = self.construct_scalar(node)
        if (m := _BAD_CHAR.search(value)) is not None:
            raise Refused(f"the text {short_repr(value, 40)} holds the character {m.group()!r}, which is not "
                          "allowed (NUL, control characters and lone surrogates are not valid text here)",
                          node.start_mark)
        return value

    def construct_yaml_int(self, node):
        """A decimal (or 0x/0o) integer of at most MAX_INT_DIGITS digits."""
        text = self.construct_scalar(node).lstrip("+")
        digits = text.lstrip("-")
        if len(digits) > MAX_INT_DIGITS:
            raise Refused(f"an integer of {len(digits):,} digits; numbers here have at most {MAX_INT_DIGITS}",
                          node.start_mark)
        base = 16 if digits[:2] == "0x" else 8 if digits[:2] == "0o" else 10
        value = int(digits[2:] if base != 10 else digits, base)
        return -value if text.startswith("-") else value

    def construct_yaml_float(self, node):
        """A float in YAML 1.2 core form (1.5, 1e-3, .inf, .nan)."""
        text = self.construct_scalar(node).lower()
        if text.lstrip("+-") == ".inf":
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        if len(text) > 4 * MAX_INT_DIGITS:
            raise Refused(f"a number written with {len(text):,} characters; at most {4 * MAX_INT_DIGITS}",
                          node.start_mark)
        return float(text)

    def construct_undefined(self, node):
        """Any tag outside the plain ones (check_graph refuses them first; this is the backstop)."""
        raise Refused(f"the tag {node.tag} is not allowed", node.start_mark)


def _core(tag: str, pattern: str, first: str) -> None:
    SafeLoader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern), list(first))


_core("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])
_core("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_core("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_core("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
      r"|\.(?:nan|NaN|NAN))$", "-+0123456789.")
_core("merge", r"^(?:<<)$", "<")
for _tag, _fn in (("str", SafeLoader.construct_yaml_str), ("int", SafeLoader.construct_yaml_int),
                  ("float", SafeLoader.construct_yaml_float)):
    SafeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _fn)
SafeLoader.add_constructor(None, SafeLoader.construct_undefined)
for _tag in ("binary", "timestamp", "omap", "pairs", "set"):
    SafeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", SafeLoader.construct_undefined)


def _unique_mapping(loader: SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose own keys each appear once (keys brought in by a merge key may be overridden)."""
    first: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in first:
                raise Refused(f"duplicate key {short_repr(key, 40)} (first at line {first[key].line + 1}); each key "
                              "may appear once in a mapping", key_node.start_mark)
            first[key] = key_node.start_mark
        except TypeError:  # an unhashable key: the SafeLoader refuses it itself
            pass
    return loader.construct_mapping(node, deep=deep)


SafeLoader.add_constructor("tag:yaml.org,2002:map", _unique_mapping)


def check_graph(root: yaml.Node) -> None:
    """Refuse a composed document whose tags are not plain, whose aliases refer to themselves, or which
    expands (aliases followed) to more than MAX_NODES values or deeper than MAX_DEPTH levels; iterative,
    and linear in the number of distinct nodes."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_NODES:
                raise Refused(f"aliases expand this document to more than {MAX_NODES:,} values, the most allowed "
                              "(a structure of repeated aliases, such as a 'billion laughs'?)", node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise Refused(f"nested deeper than {MAX_DEPTH} levels (aliases expanded), the most allowed",
                              node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:
            raise Refused("an alias refers to a structure that contains it (a recursive structure)", node.start_mark)
        if node.tag not in TAGS:
            raise Refused(f"the tag {node.tag} is not allowed; input files hold plain mappings, lists, text, "
                          "numbers, true/false and null", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, path: str | Path = "<text>") -> Any:
    """Data of YAML text through SafeLoader; an InputError naming the line and column of any problem."""
    try:
        return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except Refused as e:
        raise InputError(path, _where(e), e.problem) from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(path, _where(e), f"malformed YAML: {problem}") from None
    except RecursionError:  # a backstop: the depth limit stops nesting well before this
        raise InputError(path, "", f"nested too deeply; at most {MAX_DEPTH} levels are allowed") from None


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
