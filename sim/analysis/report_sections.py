"""What a report covers: the stored batches and scenarios it shows, each loaded as a `Section` with the
notes on what its runs lack (pending or failed runs, missing arms, a single replicate, no panel)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sim import inputs, redact
from sim.runs import provenance, results
from sim.runs import store as st
from sim.scenario import Scenario, ScenarioError, parse


class ReportError(ValueError):
    """A report that cannot be made from this input (unknown batch or scenario, unusable output path)."""


# ---------------------------------------------------------------- what a report covers

@dataclass
class Section:
    """One scenario's part of a report: the batch reported, its stored results and what is missing."""

    scenario: Scenario
    res: results.ScenarioResults
    batch: dict  # the batch row reported (id, replicates, started_at, finished_at, command, ...)
    batches: pd.DataFrame  # every batch of this scenario text
    model_hash: str
    path: str  # the scenario file the text came from
    status: pd.DataFrame  # one row per expected run: arm, replicate, seed, status, error
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name

    @property
    def replicates(self) -> int:
        """Replicates the reported batch asked for."""
        return int(self.batch["replicates"])

    def footer(self) -> str:
        """Provenance footer for this section's figures."""
        versions = ", ".join(sorted(set(self.res.runs.code_version.dropna()))) or provenance.code_version()
        return (f"scenario {self.name} (sha256 {self.res.sha256[:10]}), seed {self.scenario.seed}, "
                f"{self.res.participants.replicate.nunique() if len(self.res.participants) else 0} replicate trials x "
                f"{self.scenario.population.size}/arm, batch {self.batch['id']}, sim {versions}, model "
                f"{self.model_hash}, {dt.date.today().isoformat()}")


def _latest_batch(db: st.Store, where) -> dict | None:
    q = (sa.select(st.batches, st.scenarios.c.name, st.scenarios.c.sha256, st.scenarios.c.path,
                   st.scenarios.c.text)
         .join(st.scenarios, st.batches.c.scenario_id == st.scenarios.c.id))
    if where is not None:
        q = q.where(where)
    with db.engine.connect() as c:
        row = c.execute(q.order_by(st.batches.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def _known(db: st.Store) -> str:
    with db.engine.connect() as c:
        points = sa.select(st.sweep_points.c.scenario_id)
        names = sorted(set(c.execute(sa.select(st.scenarios.c.name).where(st.scenarios.c.id.not_in(points))).scalars()))
        ids = list(c.execute(sa.select(st.batches.c.id).order_by(st.batches.c.id)).scalars())
    if not ids:
        return "it holds no batches yet; run `sim run SCENARIO.yaml` first"
    shown = ", ".join(map(str, ids[-10:]))
    return f"batches there: {shown}{' (latest 10)' if len(ids) > 10 else ''}; scenarios: {', '.join(names)}"


def select(db: st.Store, batches: list[int] | tuple = (), scenarios: list[str] | tuple = ()) -> list[Section]:
    """Sections for the batches and scenarios (name or text hash: its latest batch) asked for, in that
    order; neither: the most recent batch's scenario. ReportError for anything not in the store."""
    rows = []
    for b in batches:
        row = _latest_batch(db, st.batches.c.id == b)
        if row is None:
            raise ReportError(f"batch {b} is not in {db.url}; {_known(db)}")
        rows.append(row)
    for name in scenarios:
        row = _latest_batch(db, sa.or_(st.scenarios.c.name == name, st.scenarios.c.sha256.startswith(name)))
        if row is None:
            raise ReportError(f"scenario {name!r} has no batch in {db.url}; {_known(db)}")
        rows.append(row)
    if not batches and not scenarios:
        # a sweep's points are scenarios too, but they are reported by `sim report --sweep ID`
        row = _latest_batch(db, st.batches.c.scenario_id.not_in(sa.select(st.sweep_points.c.scenario_id)))
        if row is None:
            raise ReportError(f"nothing to report: {db.url} holds no batches of scenarios; run `sim run "
                              "SCENARIO.yaml` first (for a sweep: sim report --sweep ID)")
        rows.append(row)
    seen, out = set(), []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(section(db, row))
    return out


def with_reference(sections: list[Section], arm: str) -> list[Section]:
    """The sections with `arm` as the reference of effect sizes (instead of each scenario's own);
    ReportError when a scenario has no such arm."""
    for s in sections:
        if arm not in s.scenario.arms:
            raise ReportError(f"--reference {arm!r} is not an arm of scenario {s.name!r}; its arms: "
                              f"{', '.join(s.scenario.arms)}")
        s.scenario = s.scenario.model_copy(update={"reference_arm": arm})
        s.notes = missing_notes(s)
    return sections


def section(db: st.Store, batch: dict) -> Section:
    """The report section of one batch row (as _latest_batch returns it)."""
    try:
        sc, _ = parse(inputs.load_yaml(batch["text"], batch["path"]), batch["path"])
    except (ScenarioError, inputs.InputError) as e:
        raise ReportError(f"the stored text of scenario {batch['name']!r} (sha256 {batch['sha256'][:10]}) does not "
                          f"validate with this code: {e}") from None
    mh = results.batch_model_hash(db, batch["id"])
    res = results.scenario_results(db, batch["sha256"], batch["replicates"], model_hash=mh)
    every = results.runs(db, batch["sha256"], status=None)
    by_key = every.set_index("key")
    rows = []
    for rep in range(batch["replicates"]):
        for arm in sc.arms:
            seed = f"{sc.seed}/{rep}"
            key = st.run_key(batch["sha256"], arm, rep, seed, mh)
            if key in by_key.index:
                r = by_key.loc[key]
                rows.append({"arm": arm, "replicate": rep, "seed": seed, "status": r.status,
                             "error": r.error or "", "batch_id": r.batch_id})
            else:
                rows.append({"arm": arm, "replicate": rep, "seed": seed, "status": "not run", "error": "",
                             "batch_id": np.nan})
    status = pd.DataFrame(rows)
    with db.engine.connect() as c:
        sid = c.execute(sa.select(st.scenarios.c.id).where(st.scenarios.c.sha256 == batch["sha256"])).scalar_one()
        bs = pd.read_sql(sa.select(st.batches).where(st.batches.c.scenario_id == sid).order_by(st.batches.c.id), c)
    s = Section(scenario=sc, res=res, batch=batch, batches=bs, model_hash=mh, path=batch["path"], status=status)
    s.notes = missing_notes(s)
    return s


def comma_list(values) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:12]) + (f" and {len(values) - 12} more" if len(values) > 12 else "")


def missing_notes(s: Section) -> list[str]:
    """Plain sentences on what the stored results lack, for the top of the section."""
    notes, res, sc = [], s.res, s.scenario
    st_ = s.status
    done = st_.status == "done"
    if s.batch["finished_at"] is None:
        notes.append(f"Batch {s.batch['id']} (started {s.batch['started_at']:%Y-%m-%d %H:%M} UTC) has not finished: "
                     "it is still running or was interrupted. The report shows the runs stored so far; run the same "
                     "`sim run` command again to complete it.")
    if not done.all():
        notes.append(f"{int(done.sum())} of {len(st_)} runs ({len(sc.arms)} arms x {s.replicates} replicates) are "
                     "stored complete.")
        for kind, label in (("failed", "failed"), ("not run", "not stored (pending or interrupted)"),
                            ("running", "marked running")):
            bad = st_[st_.status == kind]
            for arm, g in bad.groupby("arm", sort=False):
                err = next((e for e in g.error if e), "")
                notes.append(f"Arm {arm}: {len(g)} run(s) {label} (replicates {comma_list(g.replicate)})"
                             + (f"; error: {err.splitlines()[-1][:300]}" if err else "") + ".")
    present = set(res.participants.arm) if len(res.participants) else set()
    for arm in sc.arms:
        if arm not in present:
            notes.append(f"Arm {arm} has no finished runs: it is missing from every table and figure.")
    if sc.reference not in present and len(present):
        notes.append(f"The reference arm {sc.reference} has no finished runs: no effect sizes can be computed.")
    if len(present):
        reps = res.participants.groupby("arm").replicate.nunique()
        if reps.max() == 1:
            notes.append("Only one replicate trial per arm: the spread over replicate trials (percentile intervals, "
                         "bands, power) cannot be estimated; each interval collapses to the single trial's value.")
        elif reps.min() != reps.max():
            notes.append("Arms have different numbers of finished replicates (" + ", ".join(
                f"{a}: {n}" for a, n in reps.items()) + "); effect sizes use the replicates both arms have.")
        last = 7 * (sc.weeks + sc.follow_up_weeks)
        for week, when in ((sc.weeks, "the end of the programme"), (sc.weeks + sc.follow_up_weeks,
                                                                       "the end of follow-up")):
            gone = res.participants.assign(d=res.participants.dropout_day <= 7 * week).groupby("arm").d.mean()
            for arm in gone[gone >= 1.0].index:
                notes.append(f"In arm {arm} every participant had dropped out by {when} (week {week}): its completers "
                             "analysis is empty and its Kaplan-Meier curve reaches 0.")
            if week == last:
                break
        if res.weekly.empty:
            notes.append("No per-participant weekly panel was recorded (run with `--record participants-weekly`). "
                         "Missing without it: the share meeting 150 min in each week, individual trajectories, "
                         "relapse on the true state (relapse on the assessments is shown), and completers analyses at "
                         "other weeks than the end of the programme and of follow-up.")
        if res.assessments.empty:
            notes.append("These runs stored no assessments (made before assessments were recorded): the assessed "
                         "(LOCF) tables and the assessed checks are not computable; run them again.")
        else:
            have = res.weekly.groupby(["arm", "replicate"]).size().index
            total = res.participants.groupby(["arm", "replicate"]).size().index
            if len(have) < len(total):
                notes.append(f"The weekly panel covers {len(have)} of {len(total)} finished runs; panel-based results "
                             "use only those runs.")
    if s.model_hash != provenance.model_hash():
        notes.append(f"These runs were made by model code {s.model_hash}; the current code is "
                     f"{provenance.model_hash()}. Running the scenario again now would make new runs.")
    return notes


def _when(t) -> str:
    return "–" if t is None or pd.isna(t) else f"{pd.Timestamp(t):%Y-%m-%d %H:%M:%S} UTC"


def provenance_items(s: Section) -> list[tuple[str, str, bool]]:
    """Where the numbers came from, as (label, value, shown as code): scenario, seeds, batches, code, packages,
    host and timings."""
    runs, b = s.res.runs, s.batch
    pk = sorted(set(runs.packages.dropna())) if len(runs) else []
    packages = "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(p).items()) for p in pk) or "–"
    git = sorted({f"{sha}{' (uncommitted changes)' if dirty else ''}" for sha, dirty in
                  zip(runs.git_sha.fillna("unknown"), runs.git_dirty.fillna(False))}) if len(runs) else []
    used = sorted(int(x) for x in runs.batch_id.dropna().unique()) if len(runs) else []
    seeds = sorted(set(runs.seed), key=lambda x: int(x.split("/")[-1]) if x.split("/")[-1].isdigit() else 0)
    wall = runs.wall_seconds.sum() if len(runs) else 0.0
    done = b["finished_at"] is not None and not pd.isna(b["finished_at"])
    batch = f"{b['id']}: {s.replicates} replicates, started {_when(b['started_at'])}, "
    batch += f"finished {_when(b['finished_at'])}" if done else "not finished"
    if b.get("wall_seconds"):
        batch += f", {b['wall_seconds']:.1f} s"
        if b.get("store_seconds") is not None:
            batch += f", {100 * b['store_seconds'] / b['wall_seconds']:.0f}% of it writing to the store"
    every = ", ".join(f"{r.id} ({r.replicates} reps, "
                      f"{'finished' if r.finished_at is not None and not pd.isna(r.finished_at) else 'unfinished'})"
                      for r in s.batches.itertuples())
    return [
        ("scenario", f"{s.name} — file {s.path}", False),
        ("scenario text sha256", s.res.sha256, True),
        ("scenario seed; replicate seeds", f"{s.scenario.seed}; {comma_list(seeds) or '–'}", False),
        ("batch reported", batch, False),
        ("command", f"{redact.mask(b.get('command') or '–')} (executor {b.get('executor') or '–'}, record "
                    f"{b.get('record') or 'endpoints only'})", False),
        ("batches that stored the runs shown", ", ".join(map(str, used)) or "–", False),
        ("all batches of this scenario text", every, False),
        ("code version of the runs", ", ".join(sorted(set(runs.code_version.dropna()))) or "–", False),
        ("model hash of the runs", f"{s.model_hash} (current code: {provenance.model_hash()})", False),
        ("git commit", ", ".join(git) or "–", False),
        ("packages", packages, False),
        ("hosts", ", ".join(sorted(set(runs.host.dropna()))) or "–", False),
        ("run time", f"{len(runs)} runs, {wall:.1f} s of compute in total ({wall / max(len(runs), 1):.2f} s per run); "
                     f"first started {_when(runs.started_at.min() if len(runs) else None)}, last finished "
                     f"{_when(runs.finished_at.max() if len(runs) else None)}", False),
    ]
