"""The everyday Python path: build a model, step it, query its agents, run a batch, load the results, plot.

    .venv/bin/python examples/everyday.py --out results/example     (about half a minute; the tests run it)

Works from any folder: library scenarios are found by name in the project's scenarios/.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

from sim.analysis import metrics, plots
from sim.model.model import AdherenceModel
from sim.paths import scenario_path
from sim.runs import batch, executors, provenance, results, store
from sim.scenario import load


def main(out: Path) -> None:
    """Run the example, writing its results store and figure into `out`."""
    out.mkdir(parents=True, exist_ok=True)

    # 1. A model: one arm of a library scenario, a mesa.Model whose step is one day.
    model = AdherenceModel("standard_prescription", arm="exercise", rng=42)
    for _ in range(4 * 7 + 1):  # four weeks, then the first day of week 5 (a session day)
        model.step()

    # 2. Its agents, queried with Mesa's AgentSet (each Participant is a view onto the model's arrays).
    enrolled = model.agents.select(lambda p: p.enrolled)
    exercised = enrolled.select(lambda p: p.exercised_today)
    print(f"day {model.day}: {len(enrolled)} of {len(model.agents)} still enrolled, {len(exercised)} exercised today; "
          f"mean severity of the enrolled {enrolled.agg('severity', np.mean):.1f} points")
    first = next(iter(model.agents))
    state = first.view()  # severity S, neuroplastic reserve P, self-efficacy E, habit H, expected reward V, ...
    print("one participant's state:", {k: round(state[k], 2) for k in ("S", "P", "E", "H", "V") if k in state})

    # 3. A batch: every arm x 2 replicate trials (common random numbers), stored with provenance.
    loaded = load(scenario_path("standard_prescription"))
    db = store.Store(f"sqlite:///{out / 'example.db'}", create=True)
    with executors.executor("serial") as ex:
        done = batch.run_batch(loaded, db, ex, replicates=2, panel=True, command="examples/everyday.py")
    print(f"batch {done.batch_id}: {done.total} runs in {done.wall_seconds:.1f} s")

    # 4. The results as pandas frames, and a trial table at the end of the programme.
    sc = loaded.scenario
    print(results.runs(db, scenario=sc.name)[["arm", "replicate", "seed", "code_version"]].to_string(index=False))
    res = results.batch_results(db, done.batch_id)
    trials = metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, sc.weeks,
                                   weekly=res.weekly, programme_weeks=sc.weeks)
    print(metrics.across_replicates(trials, list(sc.arms))[["arm", "replicates", "dropout", "change", "g",
                                                             "meets_guideline"]].round(3).to_string(index=False))

    # 5. A figure, with the provenance footer every figure carries.
    footer = (f"scenario {sc.name}, seed {sc.seed}, 2 replicate trials x {sc.population.size}/arm, "
              f"sim {provenance.code_version()}, {dt.date.today().isoformat()}")
    fig = plots.outcome_curves(res.daily, sc.weeks, sc.outcomes.scale, footer, list(sc.arms))
    png, _ = plots.save(fig, out / f"{sc.name}_outcomes")
    print(f"figure: {png}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/example"),
                    help="folder for the example's store and figure (default results/example)")
    main(ap.parse_args().out)
