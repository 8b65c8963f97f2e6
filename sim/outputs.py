"""Writing output files safely: a target that exists and is not a regular file (a device such as /dev/full,
a pipe, a socket, a folder) is refused, never renamed over or written into; text goes through a temporary
file renamed over the target, so a failed write (a full disk) leaves the old file whole; every failure
is an OSError naming the target, which the command line reports with exit code 1.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def not_regular(path: str | Path) -> str | None:
    """Why `path` cannot be written as a file (it exists and is a folder, device, pipe or socket), else None."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        return "is a folder"
    if not path.is_file():
        return "exists and is not a regular file (a device, a pipe or a socket)"
    return None


def check_target(path: str | Path) -> None:
    """An OSError naming `path` if it exists and is not a regular file."""
    if (why := not_regular(path)) is not None:
        code = errno.EISDIR if why == "is a folder" else errno.EEXIST
        raise OSError(code, f"{why}; give the name of a regular file", str(path))


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in its folder, renamed over it once complete."""
    path = Path(path)
    check_target(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    return path


def write_with(path: str | Path, writer) -> Path:
    """Call `writer(temporary path)` to write a file (a frame's to_csv, to_parquet), then rename it over
    `path`; a failure leaves any old file whole and is an OSError naming `path`."""
    path = Path(path)
    check_target(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    return path
