"""Every model parameter, named once: default, plausible range, unit and source.

Scenario files override parameters by dotted name (``intention.bias: -0.4``). The range is the
plausible interval used for sweeps and for refusing nonsense; it is not a hard physical limit.
docs/ODD.md lists the same table (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Param:
    """One model parameter with its documentation."""

    name: str
    default: float
    low: float
    high: float
    unit: str
    meaning: str
    source: str


_P = Param
# Sources: SM21 = Smith & Merwin 2021 (seeds/000); L10 = Lally et al. 2010; H13 = Huys et al. 2013;
# D05 = Dunn et al. 2005 (DOSE); B99 = Blumenthal et al. 1999; S16 = Stubbs et al. 2016;
# PM01 = Posternak & Miller 2001. "guess" = reasoned guess, hand-tuned to the calibration targets.
PARAMETERS: tuple[Param, ...] = (
    # --- intention (log-odds of wanting to do today's planned session) ---
    _P("intention.bias", 2.14, -3.0, 3.0, "logit", "baseline log-odds of intending a planned session",
       "guess; tuned so ~80% of sessions are attended in supervised arms (S16 adherence); calibrated, docs/calibration.md"),
    _P("intention.w_expectancy", 2.0, 0.0, 5.0, "logit per reward unit",
       "weight of expected session reward V", "guess; outcome expectancy drives intention (SM21)"),
    _P("intention.w_efficacy", 3.5, 0.0, 5.0, "logit per unit E",
       "weight of self-efficacy E", "guess; self-efficacy predicts PA maintenance (SM21)"),
    _P("intention.w_habit", 1.0, 0.0, 4.0, "logit per unit H",
       "weight of habit strength H on intention", "guess"),
    _P("intention.w_priming", 0.8, 0.0, 3.0, "logit per unit priming",
       "lift from motivational priming before a session", "guess; SM21 future directions"),
    _P("intention.w_severity", 0.9, 0.0, 3.0, "logit per 10 HAM-D-17 points",
       "how much current severity lowers intention", "guess; severity predicts dropout (S16)"),
    _P("intention.w_cost", 1.0, 0.0, 5.0, "logit per unit discomfort",
       "how much the felt cost of a session lowers intention", "guess; motivation paradox (seeds/004)"),
    # --- action ---
    _P("action.habit_direct", 0.45, 0.0, 0.9, "probability",
       "chance that a fully formed habit triggers the session without deliberation",
       "guess; habit acts without intention (L10)"),
    _P("action.control_floor", 0.55, 0.0, 1.0, "fraction",
       "share of intention enacted at zero cognitive control",
       "guess; executive function gates intention-behaviour (Hall & Fong 2007)"),
    # --- effort and discomfort ---
    _P("effort.reference_minutes", 30.0, 10.0, 60.0, "minutes",
       "session length that counts as one unit of effort", "convention"),
    _P("effort.reference_intensity", 0.5, 0.2, 0.9, "fraction of heart-rate reserve",
       "intensity that counts as one unit of effort (moderate)", "convention (ACSM moderate = 40-59% HRR)"),
    _P("effort.fitness_offset", 1.0, 0.1, 2.0, "fitness units",
       "effort felt = load / (offset + fitness)", "guess"),
    _P("effort.tolerance_window", 1.4, 0.2, 3.0, "effort units per unit distress tolerance",
       "effort below D x window causes no discomfort (the window of tolerance)", "guess; SM21 affect regulation"),
    _P("effort.tolerance_growth", 0.004, 0.0, 0.02, "per session",
       "each completed session widens distress tolerance toward 1", "guess; graded exposure (SM21)"),
    _P("support.class_base", 0.5, 0.0, 1.0, "fraction",
       "share of a class's support that comes from the instructor, whoever else attends", "guess"),
    # --- experienced reward and learning ---
    _P("reward.mood_lift", 1.0, 0.0, 3.0, "reward units",
       "mood lift of a completed session at full reward sensitivity", "guess; acute affect after exercise"),
    _P("reward.discomfort_weight", 0.8, 0.0, 3.0, "reward units per unit discomfort",
       "aversive weight of discomfort (not blunted by anhedonia)", "guess; H13 blunting acts on reward"),
    _P("reward.social_value", 0.3, 0.0, 1.5, "reward units",
       "social reward when my partner or class shows up", "guess"),
    _P("learning.rate", 0.15, 0.01, 0.6, "per session",
       "reward-prediction-error learning rate of V", "guess; H13 (learning rate intact in depression)"),
    _P("learning.initial_expectancy", 0.4, -0.5, 1.5, "reward units",
       "expected reward before the first session, times R0", "guess"),
    # --- self-efficacy ---
    _P("efficacy.initial", 0.45, 0.05, 0.95, "0..1", "self-efficacy at baseline", "guess"),
    _P("efficacy.gain", 0.05, 0.0, 0.3, "per completed session",
       "mastery: E rises by gain x (1 - E)", "guess; SM21, seeds/002"),
    _P("efficacy.loss", 0.06, 0.0, 0.3, "per missed session",
       "E falls by loss x E x (1 + severity amplifier)", "guess"),
    _P("efficacy.attribution", 0.5, 0.0, 1.0, "fraction",
       "share of a helped session's mastery credited to the help (support, or the reward cue's share of the reward)",
       "guess; Bandura 1997 (success with external aids raises self-efficacy less); Deci, Koestner & Ryan 1999"),
    _P("efficacy.severity_amplifier", 0.5, 0.0, 3.0, "per 10 HAM-D-17 points",
       "missed sessions hurt confidence more when severe", "guess; DESIGN.md"),
    # --- habit ---
    _P("habit.rate", 0.0537, 0.005, 0.2, "per repetition",
       "median habit gain per repetition (missed days slow it, so the rate exceeds 1-0.05^(1/66) = 0.044)",
       "L10; calibrated, docs/calibration.md"),
    _P("habit.rate_spread", 0.6, 0.0, 1.5, "log-sd",
       "between-person spread (lognormal) of the habit rate; 0.6 spans ~16-187 repetitions (+-2 sd)", "L10 range 18-254 days"),
    _P("habit.miss_decay", 0.02, 0.0, 0.2, "per missed planned session",
       "habit lost on a missed planned day (one miss does not reset it)", "L10"),
    _P("habit.event_disruption", 0.531, 0.0, 1.0, "fraction",
       "share of habit strength lost when a life event changes one's routines",
       "habit discontinuity: Verplanken & Wood 2006; Wood, Tam & Witt 2005"),
    _P("habit.event_quit", 0.492, 0.0, 1.0, "probability",
       "chance that a life event ends an exercise plan outside a programme (a programme carries people through)",
       "Sallis et al. 1990 (life events, illness and injury start relapse from exercise); calibrated"),
    _P("habit.idle_decay", 0.004, 0.0, 0.05, "per day without a session",
       "slow forgetting on days without practice", "guess"),
    # --- neuroplastic reserve and fitness ---
    _P("plasticity.gain", 0.065, 0.0, 0.3, "per effort unit",
       "rise of neuroplastic reserve P per unit of dose", "guess; BDNF/neuroplasticity (SM21)"),
    _P("plasticity.decay", 0.033, 0.005, 0.2, "per day",
       "decay of P without exercise (half-life ~21 days)", "guess; detraining of BDNF response"),
    _P("plasticity.reward_sensitization", 0.35, 0.0, 1.0, "R units per unit P",
       "reward sensitivity gained from P", "SM21 reward sensitization"),
    _P("plasticity.control_gain", 0.15, 0.0, 0.6, "C units per unit P",
       "cognitive control gained from P", "SM21: ES 0.24 on cognitive control"),
    _P("fitness.gain", 0.004, 0.0, 0.03, "per effort unit", "fitness gained per unit dose", "guess"),
    _P("fitness.detraining", 0.01, 0.0, 0.05, "per day",
       "return of fitness toward its baseline", "guess"),
    # --- self-management skills ---
    _P("self_management.retention", 0.002, 0.0, 0.05, "per day",
       "decay of trained self-regulation skill after training ends", "guess"),
    _P("self_management.compensation", 1.0, 0.0, 2.0, "fraction",
       "training builds more where control is low: skill x (1 + compensation x (0.5 - C0) / 0.5)",
       "direction from SM21 (self-regulation training for those lacking control); size a guess"),
    _P("self_regulation.practice_gain", 0.01, 0.0, 0.1, "per unsupported session",
       "self-regulation skill learned from a session done without external support",
       "guess; SM21 Figure 1: exercise training builds self-regulation skills"),
    _P("self_regulation.practice_max", 0.15, 0.0, 0.5, "cognitive control units",
       "most cognitive control that practice alone adds", "guess"),
    # --- symptoms ---
    _P("symptoms.relaxation_days", 14.0, 3.0, 60.0, "days",
       "time constant of severity toward its target", "guess"),
    _P("symptoms.natural_improvement", 0.14, 0.0, 0.5, "fraction of S0",
       "eventual improvement from natural course and regression to the mean", "PM01: -12% at 4-12 weeks; calibrated, docs/calibration.md"),
    _P("symptoms.course_spread", 0.243, 0.0, 0.6, "fraction of S0 (sd)",
       "between-person spread of the natural improvement (some remit alone, some worsen)",
       "guess; end-of-trial HAM-D SDs of 6-8 points"),
    _P("symptoms.natural_days", 60.0, 10.0, 365.0, "days",
       "time constant of the partial natural improvement within an episode", "PM01"),
    # --- episodes: the natural end of an episode, remission as a state, relapse ---
    _P("course.episode_median_days", 505.0, 60.0, 1500.0, "days",
       "median length of an untreated episode (Weibull); its end brings recovery to the well level",
       "Whiteford et al. 2013: 53% remit untreated within 12 months; calibrated, docs/calibration.md"),
    _P("course.episode_shape", 1.03, 0.3, 2.0, "Weibull shape",
       "below 1: the chance of an episode ending falls the longer it lasts",
       "Whiteford et al. 2013: 23% by 3 months, 53% by 12"),
    _P("episode.well_fraction", 0.25, 0.05, 0.6, "fraction of S0",
       "severity of a recovered or remitted person, as a share of their baseline", "guess; residual symptoms after remission"),
    _P("episode.remission_level", 7.0, 3.0, 12.0, "HAM-D-17 points",
       "true severity at or below which a person is remitting", "Frank et al. 1991 consensus definitions"),
    _P("episode.confirm_days", 14.0, 1.0, 56.0, "days",
       "days at or below the remission level before remission is a state", "Frank et al. 1991 (at least 2 weeks)"),
    _P("episode.relapse_given_event", 0.261, 0.0, 1.0, "probability",
       "chance that a life event during remission starts a new episode (unprotected)",
       "Geddes et al. 2003: 41% relapse within a year off the drug; calibrated, docs/calibration.md"),
    _P("episode.drug_protection", 0.839, 0.0, 1.0, "fraction",
       "share of relapse risk removed while an antidepressant works fully",
       "Geddes et al. 2003: 18% vs 41% relapse; calibrated, docs/calibration.md"),
    _P("episode.exercise_protection", 0.4, 0.0, 1.0, "fraction",
       "share of relapse risk removed at full neuroplastic reserve and habit (their mean counts)", "guess; Babyak et al. 2000 (less relapse with continued exercise)"),
    # --- individual responsiveness (lognormal multipliers, median 1) ---
    _P("response.exercise_spread", 0.743, 0.0, 1.5, "log-sd",
       "between-person spread of the symptom benefit of exercise", "guess; Stone et al. 2022 (wide individual change)"),
    _P("response.drug_spread", 0.494, 0.0, 1.5, "log-sd",
       "between-person spread of the drug benefit", "guess; Stone et al. 2022"),
    _P("response.nonspecific_spread", 0.22, 0.0, 1.5, "log-sd",
       "between-person spread of contact and placebo (expectancy) benefit", "guess; Stone et al. 2022"),
    _P("response.correlation", 0.4, 0.0, 0.9, "correlation",
       "correlation of the three responsiveness draws (on the log scale)",
       "guess; drug and placebo response go together (Stone et al. 2022)"),
    # --- age ---
    _P("age.plasticity_decline", 0.049, 0.0, 0.5, "log-change per decade",
       "neuroplastic gain falls by this (log scale) per decade of age above 45",
       "guess; direction from Lovden et al. 2010 (adult plasticity declines with age)"),
    _P("symptoms.contact_benefit", 0.122, 0.0, 0.5, "fraction",
       "largest improvement from non-specific contact (attention, supervision)", "D05 flexibility arm -29%; calibrated, docs/calibration.md"),
    _P("symptoms.contact_half", 1.0, 0.1, 5.0, "contacts per week",
       "contact frequency giving half the contact benefit", "guess"),
    _P("symptoms.contact_memory_days", 14.0, 3.0, 60.0, "days",
       "memory of recent contact", "guess"),
    _P("symptoms.plasticity_benefit", 0.626, 0.0, 0.8, "fraction",
       "largest improvement from the neuroplastic pathway", "D05 public-health dose -47%; calibrated, docs/calibration.md"),
    _P("symptoms.plasticity_half", 0.615, 0.05, 0.95, "P units",
       "P giving half the plasticity benefit", "D05 low dose ~ control: a threshold; calibrated, docs/calibration.md"),
    _P("symptoms.plasticity_hill", 3.81, 1.0, 8.0, "exponent",
       "steepness of the dose-benefit curve (1 = no threshold; small doses count)",
       "D05 dose arms with the small-dose evidence (Pearce et al. JAMA Psychiatry 2022); calibrated, docs/calibration.md"),
    _P("symptoms.efficacy_benefit", 0.119, 0.0, 0.4, "fraction per unit E above baseline",
       "improvement from gained self-efficacy (behavioural pathway)", "guess; SM21 Figure 1"),
    _P("symptoms.noise_sd", 0.6, 0.0, 3.0, "HAM-D points per day at 10 points",
       "daily fluctuation of severity; scales with the square root of severity (the well fluctuate less)", "guess"),
    _P("symptoms.event_rate", 0.004, 0.0, 0.02, "per day",
       "chance of a stressful life event", "guess (~1.5 a year)"),
    _P("symptoms.event_size", 3.0, 0.0, 10.0, "HAM-D-17 points",
       "mean severity jump of a life event (exponential)", "guess"),
    _P("symptoms.treatment_overlap", 0.7, 0.0, 1.0, "fraction",
       "how far exercise and drug benefits overlap (1 = combined is no better than the larger)",
       "B99: exercise + sertraline no better than either at 16 weeks"),
    # --- pills: placebo expectancy and stopping ---
    _P("placebo.benefit", 0.232, 0.0, 0.4, "fraction",
       "largest improvement from taking a pill (expectancy), drug or placebo alike",
       "guess; placebo arms of acute trials (Stone et al. 2022)"),
    _P("placebo.build_days", 14.0, 2.0, 60.0, "days", "time constant of the expectancy effect", "guess"),
    _P("pill.stop_base", 0.00694, 0.0, 0.02, "per day",
       "chance of stopping the study pill on any day", "placebo-arm dropout ~26% (Sharma et al. 2019); calibrated"),
    _P("pill.stop_settle_days", 215.0, 10.0, 720.0, "days",
       "the daily chance of stopping falls with time on the pill (those who tolerate it stay)",
       "guess; maintenance trials lose far fewer than acute ones"),
    _P("pill.stop_no_benefit", 0.00615, 0.0, 0.03, "per day at no improvement",
       "extra chance of stopping after 4 weeks without improvement (lack of effect)", "guess"),
    _P("pill.stop_side_effects", 0.002, 0.0, 0.02, "per day at the start",
       "extra chance of stopping a drug (not placebo) from side effects, fading over 2 weeks",
       "active/placebo dropout risk ratio 1.08 (doi:10.1016/j.pnpbp.2019.109777)"),
    # --- self-directed exercise (anyone, any arm) ---
    _P("own.uptake", 0.0003, 0.0, 0.01, "per day",
       "chance that someone with no exercise plan starts one of their own, during the programme", "guess"),
    _P("own.uptake_follow_up", 0.00055, 0.0, 0.02, "per day",
       "the same after the programme ends", "guess; exercise taken up after trials (Singh et al. 2001)"),
    _P("own.sessions_per_week", 3.0, 1.0, 7.0, "sessions/week", "a self-directed plan's sessions", "convention"),
    _P("own.minutes", 30.0, 10.0, 90.0, "minutes", "a self-directed session's length", "convention"),
    _P("own.intensity", 0.5, 0.2, 0.9, "fraction of heart-rate reserve", "a self-directed session's intensity",
       "convention (moderate)"),
    # --- measurement ---
    _P("measurement.rater_sd", 1.25, 0.0, 5.0, "HAM-D-17 points",
       "rater error of one assessment's total score", "Trajkovic et al. 2011 (ICC 0.94); Morriss et al. 2008"),
    _P("measurement.control_reliability", 0.5, 0.05, 1.0, "test-retest r",
       "reliability of measured cognitive control", "Hedge, Powell & Sumner 2018 (0 to 0.82)"),
    _P("measurement.reward_reliability", 0.4, 0.05, 1.0, "test-retest r",
       "reliability of measured reward sensitivity", "Behav Res Methods 2023 (ICC 0.02-0.71)"),
    _P("measurement.other_reliability", 0.8, 0.05, 1.0, "test-retest r",
       "reliability of measured distress tolerance and fitness", "guess (questionnaires, fitness tests)"),
    # --- medication ---
    _P("medication.effect", 0.347, 0.0, 0.7, "fraction",
       "largest improvement from an antidepressant taken as prescribed, beyond a pill's expectancy (placebo.benefit)", "B99 sertraline ~ exercise at 16 weeks; calibrated, docs/calibration.md"),
    _P("medication.onset_days", 4.0, 0.0, 42.0, "days", "lag before any drug effect", "guess; SSRI onset"),
    _P("medication.build_days", 10.0, 2.0, 60.0, "days",
       "time constant of the drug effect after the lag", "B99 fastest initial response"),
    _P("medication.washout_days", 30.0, 5.0, 120.0, "days",
       "decay of the drug effect after stopping", "guess; discontinuation"),
    # --- dropout ---
    _P("dropout.base", 0.165, 0.0, 0.6, "per missed planned session",
       "dropout hazard of a single missed planned session at zero self-efficacy", "S16 18% by week 16; calibrated, docs/calibration.md"),
    _P("dropout.efficacy_power", 3.0, 1.0, 6.0, "exponent",
       "hazard grows as (1 - E)^power: dropout ends a loss of confidence, not a random miss",
       "guess; self-efficacy predicts maintenance (SM21)"),
    _P("dropout.streak", 2.56, 0.0, 5.0, "per extra consecutive miss",
       "hazard multiplier growth with each consecutive miss", "guess; 'repeated misses end in dropout'"),
)

DEFAULTS: Mapping[str, float] = MappingProxyType({p.name: p.default for p in PARAMETERS})
BY_NAME: Mapping[str, Param] = MappingProxyType({p.name: p for p in PARAMETERS})

# The main uncertain parameters: reasoned guesses that drive the cycle (intention, action, reward,
# learning, confidence, plasticity, dropout escalation) and that no calibration target pins down. The
# default screening (scenarios/sweeps/screening.yaml) and `sim run --parameter-draws` vary these over
# their declared ranges; the calibrated parameters stay at their fitted values.
UNCERTAIN: tuple[str, ...] = (
    "intention.w_expectancy", "intention.w_efficacy", "intention.w_habit", "intention.w_severity",
    "intention.w_cost", "action.habit_direct", "action.control_floor", "reward.mood_lift",
    "reward.discomfort_weight", "reward.social_value", "learning.rate", "efficacy.gain", "efficacy.loss",
    "plasticity.gain", "plasticity.decay", "plasticity.reward_sensitization", "symptoms.efficacy_benefit",
    "symptoms.relaxation_days", "dropout.streak", "support.class_base",
)


class ParameterError(ValueError):
    """An override names an unknown parameter or a value outside its range."""

    def __init__(self, name: str, value: object, allowed: str):
        super().__init__(f"{name}: {value!r} ({allowed})")
        self.name, self.value, self.allowed = name, value, allowed


def resolve(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Return the full parameter dict with validated overrides applied."""
    values = dict(DEFAULTS)
    for name, value in (overrides or {}).items():
        if name not in BY_NAME:
            raise ParameterError(name, value, "unknown parameter; see docs/ODD.md for the list")
        p = BY_NAME[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(name, value, "must be a number")
        if not p.low <= value <= p.high:
            raise ParameterError(name, value, f"allowed range {p.low} to {p.high}")
        values[name] = float(value)
    return values
