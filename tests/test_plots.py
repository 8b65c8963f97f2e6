"""Figures and the series behind them: each plot is a labelled Figure with a provenance footer; plots that
need data the runs lack say so; Kaplan-Meier and the report metrics compute what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from sim.analysis import metrics, plots
from tests.conftest import make_scenario, participants, run_arms, weekly

FOOTER = "scenario tiny (sha256 abc), seed 7, sim test"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plots.plt.close("all")


@pytest.fixture(scope="module")
def frames():
    """Two arms x 2 replicates of a tiny trial with the weekly panel, as stored frames would be."""
    loaded = make_scenario(weeks=4, follow_up_weeks=2, population={"size": 30}, seed=7,
                           arms={"usual_care": {}, "exercise": {"prescription": {"minutes": 30},
                                                                "support": {"kind": "partner"}}})
    runs = run_arms(loaded, replicates=2)
    p = pd.concat([participants(r).assign(arm=a) for a, r in runs.items()], ignore_index=True)
    w = pd.concat([weekly(r).assign(arm=a) for a, r in runs.items()], ignore_index=True)
    d = pd.concat([rec.daily.assign(arm=a, replicate=rec.replicate) for a, r in runs.items() for rec in r],
                  ignore_index=True)
    return loaded.scenario, p, d, w


def _texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        if ax.get_legend():
            parts += [t.get_text() for t in ax.get_legend().get_texts()]
    for legend in fig.legends:
        parts += [t.get_text() for t in legend.get_texts()]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return "\n".join(parts)


def _all_figures(sc, p, d, w) -> dict[str, Figure]:
    arms = list(sc.arms)
    return {
        "outcomes": plots.outcome_curves(d, sc.weeks, "HAM-D-17", FOOTER, arms),
        "minutes": plots.minutes_and_guideline(d, w, sc.weeks, FOOTER, arms),
        "dropout": plots.dropout_survival(p, sc.days, sc.weeks, FOOTER, arms),
        "heterogeneity": plots.heterogeneity(p, sc.reference, FOOTER, arms),
        "dose": plots.dose_response(p, FOOTER, arms, follow_up_weeks=sc.follow_up_weeks),
        "trajectories": plots.trajectories(w, p, sc.weeks, FOOTER, arms),
    }


def test_every_figure_has_footer_labels_units_and_arms(frames):
    sc, p, d, w = frames
    for name, fig in _all_figures(sc, p, d, w).items():
        text = _texts(fig)
        assert FOOTER in text, name
        assert "week" in text or "minutes" in text or "tertile" in text, name
        assert "exercise" in text, f"{name}: arms are named"
        assert any(ax.get_ylabel() for ax in fig.axes), name
    assert "minutes/week" in _texts(_all_figures(sc, p, d, w)["minutes"])
    assert "(%)" in _texts(_all_figures(sc, p, d, w)["dropout"])


def test_save_writes_png_and_svg_even_with_dots_in_the_name(frames, tmp_path):
    sc, p, d, w = frames
    fig = plots.dropout_survival(p, sc.days, sc.weeks, FOOTER, list(sc.arms))
    paths = plots.save(fig, tmp_path / "trial.v2_dropout")
    assert [x.name for x in paths] == ["trial.v2_dropout.png", "trial.v2_dropout.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:2000]


def test_minutes_without_panel_shows_minutes_and_says_the_share_is_missing(frames):
    sc, p, d, w = frames
    fig = plots.minutes_and_guideline(d, w.iloc[:0], sc.weeks, FOOTER, list(sc.arms))
    text = _texts(fig)
    assert "not available" in text and "--record participants-weekly" in text
    assert len(fig.axes[0].lines) >= 2  # the minutes are still drawn


def test_figures_that_need_missing_data_raise_missing_data(frames):
    sc, p, d, w = frames
    with pytest.raises(plots.MissingData, match="weekly panel"):
        plots.trajectories(w.iloc[:0], p, sc.weeks, FOOTER)
    with pytest.raises(plots.MissingData, match="reference arm"):
        plots.heterogeneity(p[p.arm == "usual_care"], "usual_care", FOOTER)
    with pytest.raises(plots.MissingData):
        plots.forest(pd.DataFrame({"g": [np.nan], "label": ["a"], "time": ["t"]}), FOOTER)


def test_forest_plot_rows_per_arm_and_time(frames):
    sc, p, d, w = frames
    rows = []
    for week, label in ((sc.weeks, "end of programme"), (sc.weeks + sc.follow_up_weeks, "end of follow-up")):
        t = metrics.trial_metrics(p, d, sc.outcomes, sc.reference, week)
        a = metrics.across_replicates(t, list(sc.arms))
        rows.append(a[a.arm != sc.reference].assign(time=label, label="tiny: " + a.arm))
    fig = plots.forest(pd.concat(rows), FOOTER)
    text = _texts(fig)
    assert "tiny: exercise" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "end of programme" in text and "end of follow-up" in text and "Hedges g" in text


def test_kaplan_meier_matches_the_product_limit_and_log_log_greenwood_limits():
    t = np.array([1, 2, 2, 3, 4, 5, 5, 6], float)
    e = np.array([1, 1, 0, 1, 0, 1, 1, 0], bool)
    km = metrics.kaplan_meier(t, e)
    # by hand: times 1, 2, 3, 5 with at-risk 8, 7, 5, 3 and one, one, one, two events
    s = np.cumprod([1 - 1 / 8, 1 - 1 / 7, 1 - 1 / 5, 1 - 2 / 3])
    np.testing.assert_allclose(km.survival, [1, *s])
    np.testing.assert_array_equal(km.at_risk, [8, 8, 7, 5, 3])
    var = np.cumsum([1 / (8 * 7), 1 / (7 * 6), 1 / (5 * 4), 2 / (3 * 1)])
    se = np.sqrt(var) / np.abs(np.log(s))  # SE of log(-log S)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(km.low.iloc[1:], np.exp(-np.exp(np.log(-np.log(s)) + z * se)))
    np.testing.assert_allclose(km.high.iloc[1:], np.exp(-np.exp(np.log(-np.log(s)) - z * se)))


def test_kaplan_meier_when_everyone_drops_out():
    km = metrics.kaplan_meier([1, 2, 3], [True, True, True])
    assert km.survival.iloc[-1] == 0 and km.low.iloc[-1] == 0 and km.high.iloc[-1] == 0
    assert km.low.between(0, 1).all() and km.high.between(0, 1).all()


def test_dropout_survival_reaches_the_share_never_dropped(frames):
    sc, p, d, w = frames
    km = metrics.dropout_survival(p, sc.days)
    for arm, g in km.groupby("arm"):
        never = p[p.arm == arm].dropout_day.isna().mean()
        assert g.survival.iloc[-1] == pytest.approx(never)
        assert g.time.iloc[-1] == pytest.approx(sc.days / 7)
        assert (np.diff(g.survival) <= 1e-12).all()


def test_weekly_summary_and_guideline_share(frames):
    sc, p, d, w = frames
    sev = metrics.weekly_summary(d, "severity")
    assert set(sev.week) == set(range(sc.weeks + sc.follow_up_weeks + 1))
    assert ((sev.low <= sev["mean"] + 1e-9) & (sev["mean"] <= sev.high + 1e-9)).all()
    base = d[d.day == 0].groupby("arm").severity_mean.mean()
    assert sev[sev.week == 0].set_index("arm")["mean"].to_dict() == pytest.approx(base.to_dict())
    share = metrics.guideline_share_by_week(w)
    assert share["mean"].between(0, 1).all() and (share[share.arm == "usual_care"]["mean"] == 0).all()
    # minutes per week from the daily aggregates equal the panel's mean minutes
    mins = metrics.weekly_summary(d, "minutes")
    from_panel = w[w.week > 0].groupby(["arm", "week"]).minutes.mean()
    got = mins[mins.week > 0].set_index(["arm", "week"])["mean"]
    np.testing.assert_allclose(got.sort_index(), from_panel.sort_index(), rtol=1e-9)
    with pytest.raises(metrics.MetricError, match="weekly panel"):
        metrics.guideline_share_by_week(w.iloc[:0])


def test_subgroup_effects_are_zero_for_an_arm_against_itself(frames):
    sc, p, d, w = frames
    same = pd.concat([p[p.arm == "usual_care"], p[p.arm == "usual_care"].assign(arm="copy")])
    eff = metrics.subgroup_effects(same, "usual_care", ["reward_sensitivity", "cognitive_control"])
    assert len(eff) == 9 and eff.n.sum() == (p.arm == "usual_care").sum()
    np.testing.assert_allclose(eff.effect, 0, atol=1e-12)


def test_phenotype_median_split_and_tertiles(frames):
    sc, p, d, w = frames
    ph = metrics.phenotype(p)
    assert set(ph.unique()) <= set(metrics.PHENOTYPES)
    high_r = ph.astype(str).str.startswith("high R")
    assert (p.reward_sensitivity[high_r] > p.reward_sensitivity.median()).all()
    t = metrics.tertile(p.baseline_severity)
    assert t.value_counts().min() >= len(p) // 3 - 2


def test_binned_means_zero_bin_small_bins_marked_and_t_intervals():
    x = pd.Series([0.0] * 10 + list(np.linspace(1, 100, 100)) + [1000.0])
    y = pd.Series(np.r_[np.zeros(10), np.ones(100), 5.0])
    b = metrics.binned_means(x, y, bins=4, min_n=5)
    assert b.x.iloc[0] == 0 and b["mean"].iloc[0] == 0 and b.n.iloc[0] == 10
    assert len(b) == 5 and b.n.sum() == 111  # the outlier joins the top bin
    assert b["mean"].iloc[1:4].tolist() == [1.0, 1.0, 1.0] and b["mean"].iloc[4] > 1
    few = metrics.binned_means(pd.Series([0.0, 0.0, 5.0, 6.0, 7.0] + [50.0] * 10), pd.Series(np.ones(15)), bins=2)
    assert few.n.tolist() == [2, 3, 10] and few.few.tolist() == [True, True, False]  # under 10 people: marked
    lone = metrics.binned_means(pd.Series([0.0, 5.0, 50.0, 50.0]), pd.Series(np.ones(4)), bins=2, min_n=2)
    assert lone.n.tolist() == [2]  # a bin of one person has no interval and is left out
    # a t interval, not a normal one: wider for small bins
    y = pd.Series([1.0, 2.0, 3.0, 4.0])
    b = metrics.binned_means(pd.Series([0.0] * 4), y)
    half = stats.t.ppf(0.975, 3) * y.std(ddof=1) / 2
    assert b.high.iloc[0] - b["mean"].iloc[0] == pytest.approx(half) and half > 1.96 * y.std(ddof=1) / 2


def test_subgroup_effect_intervals_are_welch_t():
    x, y = np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 6.0, 9.0])
    d, lo, hi = metrics.welch_interval(x, y)
    res = stats.ttest_ind(y, x, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert d == pytest.approx(y.mean() - x.mean()) and (lo, hi) == pytest.approx((ci.low, ci.high))


def test_dose_association_adjusted_for_a_confounding_trait():
    """Minutes follow a trait that alone lowers severity: the raw slope is negative, the adjusted one about 0."""
    rng = np.random.default_rng(1)
    n = 600
    trait = rng.uniform(0, 1, n)
    p = pd.DataFrame({"arm": "a", "reward_sensitivity": trait, "minutes": 200 * trait + rng.normal(0, 10, n),
                      "start": 20.0, "end": 20 - 8 * trait + rng.normal(0, 1, n)})
    r = metrics.dose_association(p, "minutes", "end", "start", ("reward_sensitivity",)).iloc[0]
    assert r.raw < -1.5 and r.raw_high < 0  # per 60 min/week
    assert r.adjusted_low < 0 < r.adjusted_high and abs(r.adjusted) < 0.5
    assert r.n == n and r.covariates == "reward_sensitivity"


def test_power_has_a_wilson_interval_and_counts_its_trials():
    trials = pd.DataFrame({"arm": ["b"] * 10 + ["a"] * 10, "n": 30, "g_trial": 0.5,
                           "p_trial": [np.nan] * 10 + [0.01] * 7 + [0.2] * 3})
    for col in ("dropout", "adherence", "baseline", "severity", "change", "change_pct", "response", "remission",
                "meets_guideline", "g", "g_low", "g_high"):
        trials[col] = 0.0
    t = metrics.across_replicates(trials, ["b", "a"]).set_index("arm")
    assert t.loc["a", "power"] == pytest.approx(0.7) and t.loc["a", "power_n"] == 10
    assert (t.loc["a", "power_low"], t.loc["a", "power_high"]) == pytest.approx(metrics.wilson(7, 10))
    assert 0.39 < t.loc["a", "power_low"] < 0.7 < t.loc["a", "power_high"] < 0.92
    assert np.isnan(t.loc["b", "power"])  # the reference arm has no power


def test_guideline_column_is_the_share_of_weeks_meeting_it():
    """Someone at exactly 150 min in 3 of 4 weeks (programme average 112.5) counts for 3/4 of the weeks, not 0."""
    w = pd.DataFrame({"arm": "a", "replicate": 0, "pid": [0] * 5 + [1] * 5, "week": list(range(5)) * 2,
                      "minutes": [0, 150, 150, 0, 150, 0, 0, 0, 0, 0]})
    share = metrics.guideline_week_share(w, 4)
    assert share[("a", 0)] == pytest.approx(3 / 8)
    assert metrics.guideline_week_share(w.iloc[:0], 4).empty


def test_severity_axes_start_at_zero_and_a_zero_minutes_arm_stays_visible(frames):
    sc, p, d, w = frames
    figs = _all_figures(sc, p, d, w)
    sev_ax, min_ax = figs["outcomes"].axes[:2]
    assert sev_ax.get_ylim()[0] == 0 and "severity" in sev_ax.get_ylabel()
    assert min_ax.get_ylim()[0] < 0  # usual care at 0 min/week is a line above the axis, not the axis
    share_ax = figs["minutes"].axes[1]
    assert share_ax.get_ylim()[0] < 0 and figs["minutes"].axes[0].get_ylim()[0] < 0
    assert all(ax.get_ylim()[0] == 0 for ax in figs["trajectories"].axes if ax.get_visible())


def test_dose_response_is_labelled_an_association_with_the_adjusted_slope(frames):
    sc, p, d, w = frames
    text = _texts(_all_figures(sc, p, d, w)["dose"])
    assert "ASSOCIATION, not an effect" in text
    assert "raw" in text and "adjusted for" in text and "reward sensitivity" in text
    legend = _all_figures(sc, p, d, w)["dose"].axes[0].get_legend().get_title().get_text()
    assert "people per bin" in legend and "t 95% CI" in legend


def test_forest_draws_and_names_both_intervals():
    e = pd.DataFrame({"label": ["a vs r"], "time": ["end of programme"], "g": [0.5], "g_low": [0.1],
                      "g_high": [0.9], "g_trial_p2.5": [0.3], "g_trial_p97.5": [0.7], "replicates": [20]})
    fig = plots.forest(e, FOOTER)
    text = _texts(fig)
    assert "95% CI of one trial" in text and "95% of replicate trials" in text
    assert "one trial [0.10, 0.90]; trials [0.30, 0.70]" in text
    ax = fig.axes[0]
    thick = [ln for ln in ax.lines if ln.get_linewidth() >= 4]
    assert len(thick) == 1 and list(thick[0].get_xdata()) == [0.3, 0.7]
    # the one-trial CI is an error bar beside (not under) the thick bar, so both are seen
    (seg,), = [c.get_segments() for c in ax.collections]
    assert [seg[0][0], seg[1][0]] == pytest.approx([0.1, 0.9]) and seg[0][1] != thick[0].get_ydata()[0]


def test_heterogeneity_marks_cells_of_few_people(frames):
    sc, p, d, w = frames
    eff = metrics.subgroup_effects(p, sc.reference, ["reward_sensitivity", "cognitive_control"])
    assert (eff.few == (eff[["n", "n_reference"]].min(axis=1) < 10)).all()
    fig = plots.heterogeneity(p, sc.reference, FOOTER, list(sc.arms))
    text = _texts(fig)
    assert "fewer than 10 people" in text
    if eff.few.any():
        assert "*" in text
