"""What a sweep says: each point's outcomes over replicates, and SALib's sensitivity indices on the
replicate-averaged outcomes (Morris mu*/sigma, Sobol' S1/ST, delta for Latin hypercubes), with the
replicate noise they must be read against; for the uncertainty design, intervals with and without
parameter uncertainty.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pandas as pd

from sim import inputs
from sim.analysis import metrics
from sim.runs.results import SweepResults
from sim.runs.sweep import BASE_POINT
from sim.scenario import LoadedScenario, parse
from sim.sweep_spec import Sweep, SweepFile, check, problem
from sim.vocabulary import COMPARISONS


class SweepAnalysisError(ValueError):
    """A sweep that cannot be analysed as asked (missing points, a design without indices)."""


def from_store(text: str, base_text: str, path: str = "<stored sweep>") -> Sweep:
    """Rebuild a stored sweep from its file text and its base point's scenario text."""
    spec = SweepFile.model_validate(inputs.load_yaml(text, path))
    data = inputs.load_yaml(base_text, path)
    s, arms = parse(data, path)
    return check(spec, path, text, LoadedScenario(scenario=s, path=path, text=base_text, sha256="stored", arms=arms))


def stored(db, sweep_id: int, replicates: int | None = None) -> tuple[Sweep, SweepResults]:
    """A stored sweep rebuilt from its file text and base scenario, with its finished runs; KeyError (naming
    the stored sweeps) if there is no such sweep."""
    import sqlalchemy as sa

    from sim.runs import results, store

    try:
        res = results.sweep_results(db, sweep_id, replicates)
    except KeyError:
        known = results.sweeps(db)
        listed = ", ".join(f"{r.id} ({r.name}, {r.design})" for r in known.itertuples()) or "none yet"
        raise KeyError(f"sweep {sweep_id} is not in {db.url}; stored sweeps: {listed}") from None
    # the base point's text; a sweep run without it (a power curve) is rebuilt from its first point
    base_id = int(res.points.sort_values("point").scenario_id.iloc[0])
    with db.engine.connect() as c:
        base_text = c.execute(sa.select(store.scenarios.c.text).where(store.scenarios.c.id == base_id)).scalar_one()
    return from_store(res.text, base_text), res


def outcome_values(sw: Sweep, res: SweepResults) -> pd.DataFrame:
    """One row per point, outcome and replicate: the outcome's value in that replicate trial."""
    rows = []
    base = sw.base.scenario
    per_point_outcomes = any(n.startswith("outcomes.") for n in sw.factor_names)
    texts = dict(zip(res.points.point, res.points.scenario)) if per_point_outcomes else {}
    groups = {k: g for k, g in res.participants.groupby("point")}
    daily = {k: g for k, g in res.daily.groupby("point")}
    weekly = {k: g for k, g in res.weekly.groupby("point")} if not res.weekly.empty else {}
    assessments = dict(tuple(res.assessments.groupby("point"))) if not res.assessments.empty else {}
    for point in res.points.point:
        if point not in groups:
            continue
        outcomes = base.outcomes
        if texts:
            outcomes = sw.point_scenario(res.points.loc[res.points.point == point, sw.factor_names].iloc[0].to_dict(),
                                         "check").scenario.outcomes
        f = metrics.Frames(groups[point], daily[point], weekly.get(point, res.weekly.iloc[0:0]), outcomes,
                           programme_weeks=base.weeks,
                           assessments=assessments.get(point, res.assessments.iloc[0:0]))
        for o in sw.spec.outcomes:
            args = o.arguments()
            if o.metric in COMPARISONS:
                args.setdefault("reference", base.reference)
            values = metrics.compute(o.metric, f, **args)
            rows += [{"point": point, "outcome": o.id, "replicate": int(r), "value": float(v)}
                     for r, v in values.items()]
    return pd.DataFrame(rows, columns=["point", "outcome", "replicate", "value"])


def point_summary(values: pd.DataFrame) -> pd.DataFrame:
    """Per point and outcome: mean over replicates, SD, number of replicates and the standard error of
    the mean (the replicate noise a point's value carries)."""
    g = values.groupby(["point", "outcome"]).value
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "replicates": g.count()}).reset_index()
    out["se"] = out.sd / np.sqrt(out.replicates)
    return out


def wide_means(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The design points (base point left out) with one column of replicate means per outcome."""
    design = points[points.point != BASE_POINT][["point", *sw.factor_names]]
    means = summary.pivot(index="point", columns="outcome", values="mean")
    return design.join(means, on="point")


def points_outcomes(points: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Points x outcomes: each point's factor values and scenario with `<outcome>.mean`, `.se` and `.sd`."""
    wide = summary.pivot(index="point", columns="outcome", values=["mean", "se", "sd"])
    wide.columns = [f"{o}.{stat}" for stat, o in wide.columns]
    return points.drop(columns=["scenario_id"]).join(wide, on="point")


def _outcome_vector(sw: Sweep, table: pd.DataFrame, outcome: str) -> np.ndarray:
    y = table[outcome].to_numpy(float) if outcome in table else np.full(len(table), np.nan)
    if np.isnan(y).any():
        missing = table.point[np.isnan(y)].tolist()
        raise SweepAnalysisError(f"outcome {outcome!r} has no value at {len(missing)} of {len(table)} points "
                                 f"(first: {missing[:5]}): runs failed or are not finished, or the outcome is "
                                 "undefined there; run the sweep again to finish it")
    return y


def indices(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """SALib's indices for every outcome and factor on replicate-averaged outcomes (empty for a grid).

    Morris: mu, mu*, its 95% bootstrap interval and sigma, and `noise_mu_star`: the mu* that replicate
    noise alone would give if the points were independent (sqrt(2/pi) x sqrt(2) x median SE / delta;
    common random numbers make the real noise smaller). Sobol': S1 and ST with 95% intervals. Latin
    hypercube (lhs, uncertainty): Borgonovo's delta and S1 with 95% intervals."""
    design = sw.spec.design
    if design == "grid":
        return pd.DataFrame()
    table = wide_means(sw, points, summary)
    prob = problem(sw)
    x = table[sw.factor_names].to_numpy(float)
    rows = []
    for o in sw.spec.outcomes:
        y = _outcome_vector(sw, table, o.id)
        se = float(summary[(summary.outcome == o.id) & (summary.point != BASE_POINT)].se.median())
        if design == "morris":
            from SALib.analyze import morris

            r = morris.analyze(prob, x, y, num_levels=sw.spec.levels, conf_level=0.95, num_resamples=1000,
                               seed=seed)
            delta = sw.spec.levels / (2 * (sw.spec.levels - 1))
            noise = math.sqrt(2 / math.pi) * math.sqrt(2) * se / delta
            for k, name in enumerate(sw.factor_names):
                rows.append({"outcome": o.id, "factor": name, "mu": r["mu"][k], "mu_star": r["mu_star"][k],
                             "mu_star_conf": r["mu_star_conf"][k], "sigma": r["sigma"][k], "noise_mu_star": noise})
        elif design == "sobol":
            from SALib.analyze import sobol

            if np.ptp(y) == 0:
                r = {key: np.zeros(len(sw.factor_names)) for key in ("S1", "S1_conf", "ST", "ST_conf")}
            else:
                r = sobol.analyze(prob, y, calc_second_order=False, conf_level=0.95, seed=seed)
            noise_share = (se ** 2) / np.var(y, ddof=1) if np.var(y) > 0 else np.nan
            for k, name in enumerate(sw.factor_names):
                rows.append({"outcome": o.id, "factor": name, "S1": r["S1"][k], "S1_conf": r["S1_conf"][k],
                             "ST": r["ST"][k], "ST_conf": r["ST_conf"][k], "noise_share": noise_share})
        else:
            from SALib.analyze import delta as delta_method

            with contextlib.redirect_stdout(io.StringIO()):  # SALib prints binning notices per factor
                r = delta_method.analyze(prob, x, y, conf_level=0.95, seed=seed)
            # SALib 1.6 reports several delta estimators; "delta_raw" is Borgonovo's (older SALib: "delta")
            key = "delta" if "delta" in r else "delta_raw"
            for k, name in enumerate(sw.factor_names):
                rows.append({"outcome": o.id, "factor": name, "delta": r[key][k], "delta_conf": r[f"{key}_conf"][k],
                             "S1": r["S1"][k], "S1_conf": r["S1_conf"][k]})
    return pd.DataFrame(rows)


RANK_BY = {"morris": "mu_star", "sobol": "ST", "lhs": "delta", "uncertainty": "delta"}


def ranking_text(sw: Sweep, idx: pd.DataFrame) -> str:
    """Which factors matter for which outcome, most influential first, with intervals and the noise level."""
    if idx.empty:
        return ""
    key = RANK_BY[sw.spec.design]
    lines = []
    for o in sw.spec.outcomes:
        d = idx[idx.outcome == o.id].sort_values(key, ascending=False)
        if sw.spec.design == "morris":
            noise = d.noise_mu_star.iloc[0]
            shown = f"{noise:.3g}" if math.isfinite(noise) else "unknown (one replicate per point)"
            lines.append(f"{o.id} ({o.metric}): Morris mu* [95% bootstrap interval], sigma; replicate-noise level of "
                         f"mu* {shown}")
            for _, r in d.iterrows():
                flag = "  (within noise)" if r.mu_star < noise else ""
                lines.append(f"  {r.factor:<42} mu* {r.mu_star:9.4g} [{max(0.0, r.mu_star - r.mu_star_conf):.3g}, "
                             f"{r.mu_star + r.mu_star_conf:.3g}]  sigma {r.sigma:8.3g}  mu {r.mu:+9.3g}{flag}")
        elif sw.spec.design == "sobol":
            lines.append(f"{o.id} ({o.metric}): Sobol' first-order S1 and total ST [95% intervals]; replicate noise "
                         f"is {100 * d.noise_share.iloc[0]:.1f}% of the variance across points")
            for _, r in d.iterrows():
                lines.append(f"  {r.factor:<42} ST {r.ST:6.3f} [{r.ST - r.ST_conf:6.3f}, {r.ST + r.ST_conf:6.3f}]  "
                             f"S1 {r.S1:6.3f} [{r.S1 - r.S1_conf:6.3f}, {r.S1 + r.S1_conf:6.3f}]")
        else:
            lines.append(f"{o.id} ({o.metric}): Borgonovo delta and S1 [95% intervals]")
            for _, r in d.iterrows():
                lines.append(f"  {r.factor:<42} delta {r.delta:6.3f} +- {r.delta_conf:5.3f}  S1 {r.S1:6.3f} +- "
                             f"{r.S1_conf:5.3f}")
    return "\n".join(lines)


def grid_text(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame, limit: int = 60) -> str:
    """Each point's factor values and outcome means +- 1.96 SE of the replicate mean (grids and other
    designs without indices), the base scenario first."""
    wide = summary.pivot(index="point", columns="outcome", values="mean")
    se = summary.pivot(index="point", columns="outcome", values="se")
    head = "".join(f"{n.split('.')[-1][:14]:>15}" for n in sw.factor_names)
    head += "".join(f"{o.id[:22]:>24}" for o in sw.spec.outcomes)
    lines = [f"{'point':>6}{head}", f"{'':>6}" + " " * 15 * len(sw.factor_names)
             + "".join(f"{'mean +- 1.96 SE':>24}" for _ in sw.spec.outcomes)]
    for _, row in points.head(limit + 1).iterrows():
        p = row.point
        cells = "".join(f"{row[n]:>15.4g}" for n in sw.factor_names)
        for o in sw.spec.outcomes:
            m = wide.loc[p, o.id] if p in wide.index and o.id in wide else np.nan
            e = se.loc[p, o.id] if p in se.index and o.id in se else np.nan
            cells += f"{f'{m:.3g} +- {1.96 * e:.2g}':>24}"
        lines.append(f"{'base' if p == BASE_POINT else p:>6}{cells}")
    if len(points) > limit + 1:
        lines.append(f"... {len(points) - limit - 1} more points (sim export --sweep ID)")
    return "\n".join(lines)


def uncertainty(sw: Sweep, values: pd.DataFrame) -> pd.DataFrame:
    """Per outcome: the base scenario's mean with the 95% range over its replicate trials (trial sampling
    alone) beside the mean and 95% range over every draw's replicates (parameter uncertainty and trial
    sampling), the 95% range of the draws' means (parameter uncertainty alone), and the share of draws
    whose mean has the base mean's sign."""
    rows = []
    for o in sw.spec.outcomes:
        v = values[values.outcome == o.id]
        base, draws = v[v.point == BASE_POINT].value, v[v.point != BASE_POINT]
        means = draws.groupby("point").value.mean()
        b = base.mean()
        rows.append({
            "outcome": o.id, "metric": o.metric, "arm": o.arm, "week": o.week,
            "base_mean": b, "sampling_low": base.quantile(0.025), "sampling_high": base.quantile(0.975),
            "base_replicates": len(base),
            "mean": draws.value.mean(), "total_low": draws.value.quantile(0.025),
            "total_high": draws.value.quantile(0.975),
            "parameter_low": means.quantile(0.025), "parameter_high": means.quantile(0.975),
            "draws": len(means), "same_sign": float((np.sign(means) == np.sign(b)).mean()) if b != 0 else np.nan})
    return pd.DataFrame(rows)


def uncertainty_text(table: pd.DataFrame) -> str:
    """The uncertainty table as aligned text."""
    lines = [f"{'outcome':<26}{'at the calibrated defaults':<36}{'with parameter uncertainty':<36}"
             f"{'draws with the same sign':>24}",
             f"{'':<26}{'mean [95% of trials]':<36}{'mean [95% of draws x trials]':<36}"]
    for _, r in table.iterrows():
        lines.append(f"{r.outcome:<26}{f'{r.base_mean:.3g} [{r.sampling_low:.3g}, {r.sampling_high:.3g}]':<36}"
                     f"{f'{r['mean']:.3g} [{r.total_low:.3g}, {r.total_high:.3g}]':<36}"
                     f"{100 * r.same_sign:>22.0f}% of {r.draws}")
    return "\n".join(lines)
