"""A local pool's results by file: a worker writes a stack's record arrays into one file in the pool's folder
(in memory, under /dev/shm, where the system has it) and sends back only where each array lies in it; the
process that made the pool reads the file once, on its own thread, and removes it.

Sent through the pool's pipe instead, a stack's records (about 100 kB a run) are pickled by the worker, copied
through the pipe, and read and unpickled by the pool's queue thread, which takes the interpreter from the
`sim` process's own computing and storing while it does: the 40-run batch of `sim bench` took 0.61-0.63 of the
serial time that way, against 0.60-0.61 by file (docs/performance.md). Results other than lists of run records,
and records a worker could not write (a full or missing folder, an object column holding more than texts), go
through the pipe as they are. The folder is locked while the pool's process lives, so a folder is removed only
once no process holds it (not by its owner's pid, which another pid namespace sharing /dev/shm cannot see).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

ALIGN = 64  # each block starts at a multiple of this many bytes in the file
PREFIX = "sim-pool-"  # a pool's folder: sim-pool-<pid of the process that made it>-<random>
LOCK = "lock"  # the file in it whose lock the pool's process holds
STALE_SECONDS = 60.0  # a folder older than this with no lock file is left from a process killed while making it
_files = itertools.count()
_locks: dict[str, int] = {}  # this process's folders and the descriptors holding their locks


@dataclass(frozen=True)
class Spilled:
    """Where a stack's records lie: the file, its size, and each run's records with each table replaced by its
    layout: (column names in order, [(dtype, names, rows, offset)] for the columns of one dtype as one block,
    [(name, byte lengths, offset)] for texts (object arrays of str) as UTF-8)."""

    path: str
    runs: list
    size: int


def folder() -> str:
    """A new folder for a pool's results, in memory where the system has it, locked while this process (or a
    worker it forked) lives; folders of pools whose process is gone (killed before it could remove its own)
    are removed first."""
    where = base()
    for old in Path(where).glob(f"{PREFIX}*"):
        if _abandoned(old):
            shutil.rmtree(old, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=where)
    if fcntl is not None:
        fd = -1
        try:  # locked before it takes its name, so that no other process finds it unlocked
            fd = os.open(os.path.join(path, f"{LOCK}.new"), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(os.path.join(path, f"{LOCK}.new"), os.path.join(path, LOCK))
        except OSError:
            if fd >= 0:
                os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
            raise
        _locks[path] = fd
    return path


def base() -> str:
    """Where pools make their folders: /dev/shm (memory) where it can be written, else the temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def remove(path: str) -> None:
    """Remove a pool's folder (and any result in it not read), releasing its lock."""
    fd = _locks.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        os.close(fd)


def _abandoned(path: Path) -> bool:
    # A folder is in use while its lock is held: by the process that made it, or a worker forked from it. Its
    # owner's pid alone would not do: a process in another pid namespace sharing /dev/shm cannot see it, and
    # pids are reused. A folder without its lock yet is one being made, unless it is old.
    if fcntl is None:  # no locks here (Windows): a folder in the temporary folder is left to the system
        return False
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - path.stat().st_mtime > STALE_SECONDS
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def spilled(fn, where: str, item):
    """A worker's work item: fn(item), a list of run records written to a file in `where` (a Spilled), or, if it
    cannot be written there (a full or missing folder, an object column holding more than texts), as it is."""
    from sim.runs.records import RunRecords

    result = fn(item)
    if not (isinstance(result, list) and result and all(isinstance(r, RunRecords) for r in result)):
        return result
    try:
        return write(result, where)
    except Exception:  # noqa: BLE001 - a full or missing folder, a column it cannot lay out: through the pipe
        return result


def write(recs: list, where: str) -> Spilled:
    """Write the record arrays of `recs` (RunRecords) to one new file in `where`; what tells `read` where each
    one lies. Raises TypeError for an object column holding anything but texts."""
    offset, runs, texts_at, blocks_at = 0, [], [], []  # what goes where in the file

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
                    if not all(type(v) is str for v in arr):
                        raise TypeError(f"column {col!r} of {name!r} holds other objects than texts")
                    data = [v.encode() for v in arr]
                    raw = np.frombuffer(b"".join(data), np.uint8)
                    texts.append((col, [len(d) for d in data], place(raw.nbytes)))
                    texts_at.append((texts[-1][2], raw))
                else:  # the columns of a table are equally long: those of one dtype go as one block
                    kinds.setdefault(arr.dtype.str, []).append(col)
            blocks = []
            for kind, names in kinds.items():
                rows = len(cols[names[0]])
                blocks.append((kind, names, rows, place(len(names) * rows * np.dtype(kind).itemsize)))
                blocks_at.append((blocks[-1], [cols[c] for c in names]))
            tables[name] = (list(cols), blocks, texts)
        runs.append(replace(rec, tables=tables))
    buf = np.zeros(offset, np.uint8)
    for at, raw in texts_at:
        buf[at:at + raw.nbytes] = raw
    for layout, columns in blocks_at:
        block = _block(buf, *layout)
        for j, col in enumerate(columns):
            block[j] = col
    path = os.path.join(where, f"{os.getpid()}-{next(_files)}.rec")
    try:
        buf.tofile(path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return Spilled(path, runs, offset)


def _block(buf: np.ndarray, kind: str, names: list, rows: int, at: int) -> np.ndarray:
    dt = np.dtype(kind)
    return buf[at:at + len(names) * rows * dt.itemsize].view(dt).reshape(len(names), rows)


def discard(result) -> None:
    """Remove the file of a result no one will read (the caller stopped early)."""
    if isinstance(result, Spilled):
        with contextlib.suppress(OSError):
            os.unlink(result.path)


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
