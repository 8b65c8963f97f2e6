"""A PostgreSQL server for the tests: $SIM_TEST_PG_URL if set, else one started by scripts/pg-start.sh.

Tests that need it skip with the reason when no server can be started, except when
SIM_REQUIRE_PG=1 (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
_started: dict[str, str] = {}


def server_url() -> str:
    """URL of the test server's maintenance database, starting a server if needed."""
    if os.environ.get("SIM_TEST_PG_URL"):
        return os.environ["SIM_TEST_PG_URL"]
    if "url" not in _started:
        try:
            out = subprocess.run([str(ROOT / "scripts" / "pg-start.sh")], capture_output=True, text=True,
                                 timeout=120, check=True).stdout
        except (OSError, subprocess.SubprocessError) as e:
            reason = f"no PostgreSQL server could be started ({e})"
            if os.environ.get("SIM_REQUIRE_PG") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            _started[key] = value
        _started["url"] = _started["SIM_TEST_PG_URL"]
    return _started["url"]


def stop_started() -> None:
    """Stop a server this module started."""
    if "url" in _started:
        env = {**os.environ, **{k: v for k, v in _started.items() if k.startswith("SIM_TEST_PG")}}
        subprocess.run([str(ROOT / "scripts" / "pg-stop.sh")], env=env, check=False)
        _started.clear()


def fresh_database() -> str:
    """URL of a new, empty database on the test server."""
    url = sa.engine.make_url(server_url())
    name = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    eng.dispose()
    return url.set(database=name).render_as_string(hide_password=False)
