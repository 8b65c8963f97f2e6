"""The results store (SQLAlchemy): scenarios, batches, runs with provenance, and their records.

SQLite (WAL) under results/ by default, any SQLAlchemy URL otherwise. One writer: workers return
records and `Store.save_runs` writes a stack of finished runs in a single transaction, each keyed by
an idempotent run key, so an interrupted batch resumes without losing or doubling anything.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import weakref
from pathlib import Path

import alembic.command
import alembic.config
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import (
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from sim.runs import provenance, store_write
from sim.runs.records import RunRecords
from sim.runs.store_open import (  # noqa: F401 - StoreError, URL_FORMS, resolve_url re-exported
    URL_FORMS,
    StoreError,
    locked,
    missing_tables,
    parse_url,
    read_only_engine,
    reason,
    resolve_url,
    run_writer,
    sqlite_hooks,
    sqlite_read_only,
)
from sim.runs.tables import (  # noqa: F401 - the schema, re-exported
    CHILD_TABLES,
    PARTICIPANT_COLUMNS,
    arm_days,
    assessment_scores,
    batches,
    metadata,
    participant_weeks,
    participants,
    runs,
    scenarios,
    sweep_points,
    sweeps,
)
from sim.scenario import LoadedScenario

MIGRATIONS = Path(__file__).with_name("migrations")


def run_key(scenario_sha: str, arm: str, replicate: int, seed: str, model_hash: str | None = None) -> str:
    """Idempotent key of a run: the same scenario text, arm, seed and model code (default: this code's) give
    the same key."""
    text = f"{scenario_sha}|{arm}|{replicate}|{seed}|{model_hash or provenance.model_hash()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _alembic_config(connection) -> alembic.config.Config:
    cfg = alembic.config.Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


class Store:
    """A connection to the results database, migrated to this code's schema on opening."""

    def __init__(self, url: str | None = None, create: bool = False):
        """Open the store at `url` (default $SIM_DB_URL, else results/sim.db), migrated to this code's schema.
        Only with `create` may a new, empty store be made (commands that write); otherwise a missing or
        empty store is a StoreError, and a SQLite file that cannot be written is opened read-only."""
        raw = resolve_url(url)
        u, self.url = parse_url(raw)
        self.read_only = False
        try:
            if u.get_backend_name() == "sqlite":
                path = Path(u.database)
                if path.is_dir():
                    raise StoreError(f"database URL {self.url!r}: {path} is a folder; give a file name, e.g. "
                                     f"sqlite:///{path / 'sim.db'}")
                for parent in path.parents:
                    if parent.exists() and not parent.is_dir():
                        raise StoreError(f"database URL {self.url!r}: {parent} is a file, not a folder")
                if not path.exists():
                    if not create:
                        raise StoreError(f"no results database at {path} ({self.url}); run `sim run` first, or "
                                         "point --db (or SIM_DB_URL) at an existing store")
                    path.parent.mkdir(parents=True, exist_ok=True)
                elif not create and path.stat().st_size == 0:
                    raise StoreError(f"database {self.url!r} holds no results (the file is empty); run `sim run` "
                                     "first, or point --db (or SIM_DB_URL) at an existing store")
                elif sqlite_read_only(path):
                    if create:
                        raise StoreError(f"database {self.url!r} is read-only (it or its folder cannot be "
                                         "written); this command stores runs: make it writable, or give another "
                                         "store with --db")
                    self.read_only = True
            if self.read_only:
                self.engine = read_only_engine(path)
            else:
                args = {"timeout": 60} if u.get_backend_name() == "sqlite" else {"connect_timeout": 10}
                self.engine = sa.create_engine(u, connect_args=args)
        except (ImportError, SQLAlchemyError, OSError, ValueError) as e:
            raise StoreError(f"cannot use database {self.url!r}: {e.__class__.__name__}: {reason(e, raw)}") from None
        if self.engine.dialect.name == "sqlite":
            sqlite_hooks(self.engine, self.read_only)
        try:
            self._migrate(create)
        except (SQLAlchemyError, ValueError, OSError) as e:
            raise StoreError(f"cannot open database {self.url!r}: {reason(e, raw)}") from None

    @functools.cached_property
    def _run_writer(self) -> sa.Engine:
        if self.read_only:  # nothing may be written: let the write fail as it would on any connection
            return self.engine
        writer = run_writer(self.engine)
        if writer is not self.engine:
            weakref.finalize(self, writer.dispose)  # its connection closes with the store, not at exit
        return writer

    def _migrate(self, create: bool) -> None:
        """Bring the schema to this code's head revision; refuse a database from newer code, an empty one
        unless creating, and tables that do not match their recorded revision."""
        script = ScriptDirectory.from_config(_alembic_config(None))
        head = script.get_current_head()
        known = {rev.revision for rev in script.walk_revisions()}
        for attempt in (1, 2):
            with self.engine.connect() if self.read_only else self.engine.begin() as c:
                current = MigrationContext.configure(c).get_current_revision()
                present = set(sa.inspect(c).get_table_names()) & set(metadata.tables)
                if current is not None and current not in known:
                    raise StoreError(f"database {self.url!r} has schema revision {current}, newer than this code "
                                     f"knows (up to {head}); update the code (git pull) before using it")
                if current is None and present:
                    raise StoreError(f"database {self.url!r} holds sim's tables ({', '.join(sorted(present))}) but "
                                     "no schema revision (its alembic_version table is missing or empty); it was "
                                     "changed outside sim: restore it from a backup, or start a new store with --db")
                if current is None and not create:
                    raise StoreError(f"database {self.url!r} holds no results (it is empty); run `sim run` first, "
                                     "or point --db (or SIM_DB_URL) at an existing store")
                if current == head:
                    break
                if self.read_only:
                    raise StoreError(f"database {self.url!r} has schema revision {current} and needs upgrading to "
                                     f"{head}, which needs write access; run a `sim` command with write access to "
                                     "it once")
                try:
                    alembic.command.upgrade(_alembic_config(c), "head")
                    break
                except (OperationalError, ProgrammingError) as e:
                    text = str(e.orig).lower()
                    if "already exists" in text or "duplicate column" in text:
                        raise StoreError(f"database {self.url!r} records schema revision {current}, but its tables "
                                         f"are already of a later one ({str(e.orig).splitlines()[0]}); its revision "
                                         "was changed outside sim: restore it from a backup, or start a new store "
                                         "with --db") from None
                    if attempt == 2 or not isinstance(e, OperationalError):
                        raise
                    # another process migrated at the same moment; look again
        if missing := missing_tables(self.engine, metadata):
            raise StoreError(f"database {self.url!r} is damaged: table(s) {', '.join(missing)} missing although its "
                             "schema revision is current; restore it from a backup, or start a new store with --db")

    def add_scenario(self, loaded: LoadedScenario) -> int:
        """Id of the scenario text in the store, adding it if new."""
        return self.add_scenarios([loaded])[0]

    def add_scenarios(self, loaded: list[LoadedScenario]) -> list[int]:
        """Ids of the scenario texts in the store, adding the new ones (one transaction)."""
        shas = [ls.sha256 for ls in loaded]
        with self.engine.begin() as c:
            known = {}
            for chunk in range(0, len(shas), 500):
                q = sa.select(scenarios.c.sha256, scenarios.c.id).where(scenarios.c.sha256.in_(shas[chunk:chunk + 500]))
                known.update(dict(c.execute(q).all()))
            for ls in loaded:
                if ls.sha256 not in known:
                    known[ls.sha256] = c.execute(scenarios.insert().values(
                        name=ls.scenario.name, sha256=ls.sha256, path=ls.path, text=ls.text,
                        created_at=_now())).inserted_primary_key[0]
        return [known[sha] for sha in shas]

    def add_sweep(self, name: str, sha256: str, path: str, text: str, design: str,
                  points: list[tuple[int, int, str]]) -> int:
        """Id of the sweep (by the hash of its file and base scenario), adding it and its points
        (point, scenario id, factor values as JSON) if new."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(sweeps.c.id).where(sweeps.c.sha256 == sha256)).first()
            if row:
                return row.id
            sweep_id = c.execute(sweeps.insert().values(name=name, sha256=sha256, path=path, text=text,
                                                        design=design, created_at=_now())).inserted_primary_key[0]
            c.execute(sweep_points.insert(), [{"sweep_id": sweep_id, "point": p, "scenario_id": sid, "factors": f}
                                              for p, sid, f in points])
            return sweep_id

    def unfinished_other_text(self, loaded: LoadedScenario) -> sa.Row | None:
        """The latest batch of a scenario with this name but other text, if it never finished."""
        q = (sa.select(batches.c.id, batches.c.started_at, scenarios.c.sha256, scenarios.c.path)
             .join(scenarios, batches.c.scenario_id == scenarios.c.id)
             .where(scenarios.c.name == loaded.scenario.name).order_by(batches.c.id.desc()).limit(1))
        with self.engine.connect() as c:
            row = c.execute(q).first()
        if row is None or row.sha256 == loaded.sha256:
            return None
        with self.engine.connect() as c:
            finished = c.execute(sa.select(batches.c.finished_at).where(batches.c.id == row.id)).scalar_one()
        return None if finished is not None else row

    def start_batch(self, scenario_id: int, replicates: int, command: str = "", executor: str = "",
                    record: str = "") -> int:
        """Record the start of a batch and return its id."""
        return self.start_batches([scenario_id], replicates, command, executor, record)[0]

    def start_batches(self, scenario_ids: list[int], replicates: int, command: str = "", executor: str = "",
                      record: str = "") -> list[int]:
        """Record the start of one batch per scenario (one transaction) and return their ids."""
        version, now = provenance.code_version(), _now()
        with self.engine.begin() as c:
            return [c.execute(batches.insert().values(
                scenario_id=sid, replicates=replicates, code_version=version, command=command, executor=executor,
                record=record, started_at=now)).inserted_primary_key[0] for sid in scenario_ids]

    def finish_batch(self, batch_id: int, wall_seconds: float, store_seconds: float) -> None:
        """Stamp the batch's end time and how long it spent in total and writing."""
        self.finish_batches([batch_id], wall_seconds, [store_seconds])

    def finish_batches(self, batch_ids: list[int], wall_seconds: float, store_seconds: list[float]) -> None:
        """Stamp the end time of batches run together, their shared wall time and each one's writing time."""
        now = _now()
        with self.engine.begin() as c:
            for b, s in zip(batch_ids, store_seconds):
                c.execute(batches.update().where(batches.c.id == b).values(
                    finished_at=now, wall_seconds=wall_seconds, store_seconds=s))

    def done_keys(self, keys: list[str], with_panel: bool = False) -> set[str]:
        """Those of the keys whose runs are stored complete (and, if `with_panel`, with their weekly panel)."""
        # by key (the unique index), so that the cost follows the runs asked about, not all the store holds
        q = sa.select(runs.c.key).where(runs.c.status == "done", runs.c.key.in_(sa.bindparam("keys", expanding=True)))
        if with_panel:
            q = q.where(sa.exists().where(participant_weeks.c.run_id == runs.c.id))
        keys, done = list(keys), set()
        with self.engine.connect() as c:
            for k in range(0, len(keys), store_write.KEYS_PER_STATEMENT):
                done.update(c.execute(q, {"keys": keys[k:k + store_write.KEYS_PER_STATEMENT]}).scalars())
        return done

    @staticmethod
    def _run_rows(c: sa.Connection, wanted: list[dict]) -> dict:
        """The runs table's rows (id, status) of these runs by key, each run given as the values of a new row
        (key, scenario_id, batch_id, arm, replicate, seed); those not there yet are added as running."""
        found = store_write.run_rows(c, [w["key"] for w in wanted])
        if new := [w for w in wanted if w["key"] not in found]:  # runs a batch claimed have their rows already
            c.execute(runs.insert(), [{**w, "status": "running"} for w in new])
            found |= store_write.run_rows(c, [w["key"] for w in new])
        return found

    def save_run(self, key: str, scenario_id: int, batch_id: int, rec: RunRecords, panel: bool = False) -> bool:
        """Store one finished run and its records in a single transaction (or only its weekly panel, if the run
        was stored without one); False if there was nothing to add."""
        return self.save_runs([(key, scenario_id, batch_id, rec)], panel)[0]

    def save_runs(self, items: list[tuple[str, int, int, RunRecords]], panel: bool = False) -> list[bool]:
        """Store finished runs (key, scenario id, batch id, records), all in a single transaction, each as
        save_run stores one; for each, False if there was nothing to add."""
        # one transaction and one statement per table for a whole stack of runs: the single writer of a batch
        # pays SQLAlchemy's cost per statement and SQLite's per commit once per stack instead of once per run
        sha, dirty = provenance.git_state()
        finished = _now()
        try:
            with self._run_writer.begin() as c:
                found = self._run_rows(c, [{"key": k, "scenario_id": s, "batch_id": b, "arm": r.arm,
                                            "replicate": r.replicate, "seed": r.seed} for k, s, b, r in items])
                saved, todo, before = [], [], []
                for key, _, batch_id, rec in items:
                    row = found[key]
                    if row.status == "done":  # stored before: at most its weekly panel is missing
                        saved.append(panel and self._add_panel(c, row.id, rec))
                        before.append(row.id)
                    else:
                        saved.append(True)
                        todo.append((row.id, batch_id, rec))
                if before:  # storing a run clears its claim, as marking it done does
                    store_write.unclaim(c, before)
                if todo:
                    store_write.write_records(c, [run_id for run_id, _, _ in todo], [rec for *_, rec in todo], panel)
                    version, model, packages, host = (provenance.code_version(), provenance.model_hash(),
                                                      provenance.package_versions(), provenance.host())
                    store_write.mark_done(c, [(batch_id, version, model, sha, dirty, packages, host,
                                               finished - dt.timedelta(seconds=rec.wall_seconds), finished,
                                               rec.wall_seconds, run_id) for run_id, batch_id, rec in todo])
            return saved
        except IntegrityError:  # another process inserted one of these run keys at the same moment
            return [self.save_run(*it, panel=panel) for it in items] if len(items) > 1 else [False]
        except (OperationalError, OSError) as e:
            cause = reason(e, "")
            why = (" (another process may hold the database for too long)" if locked(cause)
                   else " (the disk is full)" if "full" in cause.lower()
                   else " (the disk may be full or failing)" if "i/o" in cause.lower() else "")
            which = ", ".join(f"{rec.arm}/{rec.replicate}" for *_, rec in items)
            raise StoreError(f"could not write run{'s' * (len(items) > 1)} {which} to {self.url!r}: {cause}{why}; "
                             f"nothing of {'these runs' if len(items) > 1 else 'this run'} was stored; run the same "
                             "command again to resume") from None

    @staticmethod
    def _add_panel(c: sa.Connection, run_id: int, rec: RunRecords) -> bool:
        """Add the weekly panel to a run stored without one (the same seed reproduces the run, so it fits)."""
        if c.execute(sa.select(sa.exists().where(participant_weeks.c.run_id == run_id))).scalar():
            return False
        store_write.insert(c, participant_weeks, rec.tables["weekly"], run_id)
        return True

    def save_failure(self, key: str, scenario_id: int, batch_id: int, arm: str, replicate: int, seed: str,
                     error: str) -> None:
        """Mark a run as failed with its error text (it runs again next time)."""
        with self.engine.begin() as c:
            row = self._run_rows(c, [{"key": key, "scenario_id": scenario_id, "batch_id": batch_id, "arm": arm,
                                      "replicate": replicate, "seed": seed}])[key]
            if row.status != "done":
                c.execute(runs.update().where(runs.c.id == row.id).values(status="failed", error=error,
                                                                           finished_at=_now(), claimed_by=None,
                                                                           lease_until=None))
            else:  # stored before (run again for its weekly panel): only its claim goes
                store_write.unclaim(c, [row.id])

