"""A local pool's results by file: a worker writes a stack's record arrays into one file in the pool's folder
(in memory, under /dev/shm, where the system has it) and sends back only where each array lies in it; the
process that made the pool reads the file once, on its own thread, and removes it.

Sent through the pool's pipe instead, a stack's records (about 100 kB a run) are pickled by the worker, copied
through the pipe, and read and unpickled by the pool's queue thread, which takes the interpreter from the
`sim` process's own computing and storing while it does: the 40-run batch of `sim bench` took 0.61-0.63 of the
serial time that way, against 0.60-0.61 by file (docs/performance.md). Results other than lists of run records,
and records a worker could not write (a full or missing folder), go through the pipe as they are.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ALIGN = 64  # each block starts at a multiple of this many bytes in the file
PREFIX = "sim-pool-"  # a pool's folder: sim-pool-<pid of the process that made it>-<random>
_files = itertools.count()


@dataclass(frozen=True)
class Spilled:
    """Where a stack's records lie: the file, its size, and each run's records with each table replaced by its
    layout: (column names in order, [(dtype, names, rows, offset)] for the columns of one dtype as one block,
    [(name, byte lengths, offset)] for texts (object arrays of str) as UTF-8)."""

    path: str
    runs: list
    size: int


def folder() -> str:
    """A new folder for a pool's results, in memory where the system has it; folders left by pools whose process
    is gone (killed before it could remove its own) are removed first."""
    from sim.runs.workers import pid_alive

    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    for old in Path(base).glob(f"{PREFIX}*"):
        pid = old.name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)


def spilled(fn, where: str, item):
    """A worker's work item: fn(item), a list of run records written to a file in `where` (a Spilled), or, if it
    cannot be written there, as it is."""
    from sim.runs.records import RunRecords

    result = fn(item)
    if not (isinstance(result, list) and result and all(isinstance(r, RunRecords) for r in result)):
        return result
    try:
        return write(result, where)
    except OSError:  # a full or missing folder: through the pipe, as before
        return result


def write(recs: list, where: str) -> Spilled:
    """Write the record arrays of `recs` (RunRecords) to one new file in `where`; what tells `read` where each
    one lies."""
    offset, runs, copies = 0, [], []

    def place(nbytes: int) -> int:
        nonlocal offset
        at, offset = offset, offset + -(-nbytes // ALIGN) * ALIGN
        return at

    for rec in recs:
        tables = {}
        for name, cols in rec.tables.items():
            kinds: dict[str, list[str]] = {}
            texts = []
            for col, arr in cols.items():
                if arr.dtype.kind == "O":  # texts: their UTF-8 bytes, and each one's length
                    data = [str(v).encode() for v in arr]
                    raw = np.frombuffer(b"".join(data), np.uint8)
                    texts.append((col, [len(d) for d in data], place(raw.nbytes)))
                    copies.append((texts[-1][2], raw))
                else:  # the columns of a table are equally long: those of one dtype go as one block
                    kinds.setdefault(arr.dtype.str, []).append(col)
            blocks = []
            for kind, names in kinds.items():
                rows = len(cols[names[0]])
                blocks.append((kind, names, rows, place(len(names) * rows * np.dtype(kind).itemsize)))
                copies.append((blocks[-1], [cols[c] for c in names]))
            tables[name] = (list(cols), blocks, texts)
        runs.append(replace(rec, tables=tables))
    buf = np.zeros(offset, np.uint8)
    for at, what in copies:
        if isinstance(at, int):
            buf[at:at + what.nbytes] = what
        else:
            block = _block(buf, *at)
            for j, col in enumerate(what):
                block[j] = col
    path = os.path.join(where, f"{os.getpid()}-{next(_files)}.rec")
    buf.tofile(path)
    return Spilled(path, runs, offset)


def _block(buf: np.ndarray, kind: str, names: list, rows: int, at: int) -> np.ndarray:
    dt = np.dtype(kind)
    return buf[at:at + len(names) * rows * dt.itemsize].view(dt).reshape(len(names), rows)


def read(result):
    """The run records a worker wrote (the file is removed); any other result as it is."""
    if not isinstance(result, Spilled):
        return result
    try:
        buf = np.fromfile(result.path, np.uint8, result.size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(result.path)
    if buf.size != result.size:
        raise OSError(f"{result.path}: a worker's records file holds {buf.size} of its {result.size} bytes")
    out = []
    for rec in result.runs:
        tables = {}
        for name, (order, blocks, texts) in rec.tables.items():
            cols = {}
            for block in blocks:
                cols.update(zip(block[1], _block(buf, *block)))
            for col, lengths, at in texts:
                raw, values, k = buf[at:at + sum(lengths)].tobytes(), np.empty(len(lengths), object), 0
                for j, n in enumerate(lengths):
                    values[j], k = raw[k:k + n].decode(), k + n
                cols[col] = values
            tables[name] = {c: cols[c] for c in order}
        out.append(replace(rec, tables=tables))
    return out
