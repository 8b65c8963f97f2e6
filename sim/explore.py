"""The browser explorer: a Mesa SolaraViz app that steps one arm of a scenario beside a reference arm.

`sim explore [SCENARIO]` (or `make explore`) serves it on 127.0.0.1 through `serve`; Solara loads this module
as the app and renders `Page`. Mesa's SolaraViz gives the controls card (Reset, play, Step), the sliders
(`model_params`, rebuilt on Reset) and the page; the panels here draw the curves, the agent view and the
scenario writer. What is run is sim/explore_model.py's `ExplorerModel`, which builds both arms through the
runner, so the explorer shows what `sim run` would compute.
"""

from __future__ import annotations

import html
import os
import sys
import warnings
from pathlib import Path

import solara
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz
from mesa.visualization.user_param import Slider
from mesa.visualization.utils import update_counter

from sim import explore_model as em
from sim import parameters

ENV_SCENARIO, ENV_ARM, ENV_REFERENCE = "SIM_EXPLORE_SCENARIO", "SIM_EXPLORE_ARM", "SIM_EXPLORE_REFERENCE"
ARM_COLOR, REFERENCE_COLOR = "tab:blue", "0.45"
STATE_COLORS = ("tab:green", "tab:orange", "tab:red", "0.7")  # in em.STATES order
DAYS_PER_FRAME = 7  # Step and each frame of play advance one week; the curves are drawn per frame


def model_params(model: em.ExplorerModel) -> dict:
    """SolaraViz model_params: the scenario, arms and replicate fixed; one input per control, at the model's
    current settings, over the control's declared range."""
    params: dict = {"scenario_file": model.source, "arm": model.arm_name, "reference": model.reference_name,
                    "replicate": Slider("replicate (which people and random numbers)", model.replicate, 0,
                                        max(model.loaded.scenario.replicates - 1, 1), 1, dtype=int)}
    for c in em.controls(model.loaded):
        value = model.settings[c.key]
        label = c.label
        if c.kind == "select":
            params[c.key] = {"type": "Select", "label": label, "value": value, "values": list(c.choices)}
        elif c.kind == "bool":
            params[c.key] = {"type": "Checkbox", "label": label, "value": bool(value)}
        else:
            dtype = int if c.kind == "int" else float
            params[c.key] = Slider(label, dtype(value), dtype(c.low), dtype(c.high), dtype(c.step), dtype=dtype)
    return params


def _phases(ax, model: em.ExplorerModel) -> None:
    sc = model.loaded.scenario
    ax.set_xlim(0, sc.weeks + sc.follow_up_weeks)
    if sc.follow_up_weeks:
        ax.axvline(sc.weeks, color="0.6", ls="--", lw=1)
    ax.grid(alpha=0.3)


def curves_figure(model: em.ExplorerModel) -> Figure:
    """Severity, share enrolled, share exercising and weekly minutes of both arms up to today."""
    fig = Figure(figsize=(9, 6.2), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    scale = model.loaded.scenario.outcomes.scale
    panels = (("severity", f"severity ({scale} points, mean)", 1), ("enrolled", "enrolled in the trial (%)", 100),
              ("exercising", "exercised on a day (%, 7-day mean)", 100),
              ("minutes", "exercise (minutes/week, mean)", 1))
    arms = ((model.arm_name, ARM_COLOR, "-"), (f"{model.reference_name} (reference)", REFERENCE_COLOR, "--"))
    for ax, (key, label, factor) in zip(axes.flat, panels):
        for (name, color, ls), m in zip(arms, model.arms.values()):
            c = em.curves(m)
            ax.plot(c["week"], factor * c[key], color=color, ls=ls, lw=2, label=name)
        ax.set_ylabel(label)
        if factor == 100:  # shares on their whole range, so a few points of dropout are not magnified
            ax.set_ylim(0, 102)
        _phases(ax, model)
    axes[0, 0].legend(loc="lower left", fontsize="small")
    for ax in axes[1]:
        ax.set_xlabel("week (dashed line: end of programme)")
    fig.suptitle(f"{model.loaded.scenario.name}: day {model.day} (week {model.day / 7:.0f}), replicate "
                 f"{model.replicate}, {model.arms[model.arm_name].n} people per arm", fontsize="medium")
    return fig


def agents_figure(model: em.ExplorerModel) -> Figure:
    """Each participant at their current reward sensitivity and cognitive control, coloured by state (a ring
    marks remission), with partners and classes drawn as ties; the arm beside the reference."""
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = (model.arm_name, f"{model.reference_name} (reference)")
    for ax, title, m in zip(axes, titles, model.arms.values()):
        v = em.agent_view(m)
        R, C = v["R"], v["C"]
        segments = [[(R[i], C[i]), (R[j], C[j])] for i, j in v["partners"]]
        for rows in v["classes"]:  # each member tied to the class's centre
            cx, cy = R[rows].mean(), C[rows].mean()
            segments += [[(cx, cy), (R[i], C[i])] for i in rows]
        if segments:
            ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.6, alpha=0.35, zorder=1))
        for k, (name, color) in enumerate(zip(em.STATES, STATE_COLORS)):
            rows = v["state"] == k
            ax.scatter(R[rows], C[rows], s=22, color=color, label=f"{name} ({rows.sum()})", zorder=2,
                       edgecolors=["black" if r else "none" for r in v["remitted"][rows]], linewidths=1.2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("reward sensitivity R(t)")
        ax.set_title(f"{title}: {int(v['remitted'].sum())} remitted (black ring)", fontsize="medium")
        ax.legend(loc="lower right", fontsize="x-small", framealpha=0.8)
    axes[0].set_ylabel("cognitive control C(t)")
    return fig


def readout(model: em.ExplorerModel) -> str:
    """Today's values of both arms as an HTML table (what the curves end on)."""
    head = "".join(f"<th style='padding: 2px 10px'>{h}</th>" for h in ("arm", "severity", "enrolled", "exercised on a day", "minutes/week"))
    rows = []
    for name, m in model.arms.items():
        c = em.curves(m)
        cells = (name, f"{c['severity'][-1]:.2f}", f"{100 * c['enrolled'][-1]:.1f}%",
                 f"{100 * c['exercising'][-1]:.1f}%", f"{c['minutes'][-1]:.1f}")
        rows.append("<tr>" + "".join(f"<td style='padding: 2px 10px'>{html.escape(v)}</td>" for v in cells) + "</tr>")
    return (f"<p><b>Day {model.day}</b> (severity in {model.loaded.scenario.outcomes.scale} points)</p>"
            f"<table class='sim-table'><tr>{head}</tr>{''.join(rows)}</table>")


def settings_text(model: em.ExplorerModel) -> str:
    """The settings of the run shown, one line per group (the sliders show values only while moved)."""
    s = model.settings

    def line(keys):
        return ", ".join(f"{k.removeprefix('arm.').removeprefix('population.')} = "
                         f"{s[k] if isinstance(s[k], (str, bool)) else format(s[k], 'g')}" for k in keys)

    design = [k for k in s if k.startswith("arm.")]
    population = [k for k in s if k.startswith("population.")]
    changed = [k for k in s if k in parameters.BY_NAME and s[k] != parameters.DEFAULTS[k]]
    return (f"{model.arm_name}: {line(design)}. Population: {line(population)}. "
            f"Parameters changed from their defaults: {line(changed) or 'none'}.")


@solara.component
def Curves(model: em.ExplorerModel):
    """Panel: the live curves of both arms."""
    update_counter.get()
    with solara.Column(classes=["sim-curves"]):
        solara.FigureMatplotlib(curves_figure(model), format="png", dpi=100)


@solara.component
def Agents(model: em.ExplorerModel):
    """Panel: the agent view."""
    update_counter.get()
    with solara.Column(classes=["sim-agents"]):
        solara.FigureMatplotlib(agents_figure(model), format="png", dpi=100)


@solara.component
def Today(model: em.ExplorerModel):
    """Panel: today's values and the button that writes the settings as a scenario file."""
    update_counter.get()
    default = f"results/{model.loaded.scenario.name}.yaml"
    path, set_path = solara.use_state(default)
    message, set_message = solara.use_state("")

    def save():
        try:
            written = em.write_scenario(model.data, path)
            set_message(f"written: {written} (run it with `sim run {written}`)")
        except OSError as e:
            set_message(f"could not write {path}: {e.strerror or e}")

    with solara.Column(classes=["sim-readout"]):
        solara.HTML(tag="div", unsafe_innerHTML=readout(model))
    solara.Text(f"Run shown: {settings_text(model)}", style={"font-size": "0.85em"})
    solara.InputText("scenario file to write", value=path, on_value=set_path)
    solara.Button("Write scenario file", on_click=save, color="primary", classes=["sim-save"])
    solara.Text("Writes the settings of the run shown (press Reset to apply moved sliders).")
    if message.startswith("written"):
        solara.Success(message)
    elif message:
        solara.Error(message)


def _launch() -> tuple[str, str | None, str | None]:
    return (os.environ.get(ENV_SCENARIO, em.DEFAULT_SCENARIO), os.environ.get(ENV_ARM) or None,
            os.environ.get(ENV_REFERENCE) or None)


@solara.component
def Page():
    """The app: a fresh ExplorerModel per browser session, shown through Mesa's SolaraViz."""
    model = solara.use_memo(lambda: em.ExplorerModel(*_launch()), [])
    SolaraViz(model, components=[(Curves, 0), (Agents, 0), (Today, 0)], model_params=model_params(model),
              name="Exercise adherence explorer", play_interval=50, render_interval=DAYS_PER_FRAME)


def _offline(url: str) -> bytes:
    # Solara's server fetches a front-end file missing from its asset folder from a CDN; the explorer must
    # work offline, so every file has to come from the solara-assets package and a miss is reported.
    print(f"sim explore: {url} is not among Solara's offline assets (the solara-assets package); not fetched",
          file=sys.stderr)
    raise FileNotFoundError(url)


def serve(scenario_file: str | Path, arm: str | None, reference: str | None, port: int,
          host: str = "127.0.0.1") -> int:
    """Serve the explorer until interrupted (Solara's server; front-end assets from solara-assets only)."""
    import solara.server.settings as server_settings
    from click.exceptions import Abort
    from solara.__main__ import cli
    from solara.server import cdn_helper

    os.environ[ENV_SCENARIO], os.environ[ENV_ARM] = str(scenario_file), arm or ""
    os.environ[ENV_REFERENCE] = reference or ""
    server_settings.telemetry.mixpanel_enable = False  # no usage reports leave the machine
    solara.settings.assets.proxy = True  # the page loads its assets from this server, not from a CDN
    cdn_helper.fetch_from_cdn = _offline
    # plain http on 127.0.0.1 is this server's purpose; Solara warns about it on every page load
    warnings.filterwarnings("ignore", message="Cookies with samesite=none require https")
    print(f"explorer: http://{host}:{port} ({scenario_file}; Ctrl-C stops it)", flush=True)
    try:
        cli.main(["run", "sim.explore:Page", "--host", host, "--port", str(port), "--production", "--no-open",
                  "--no-check-version", "--log-level", "warning"], prog_name="sim explore", standalone_mode=False)
    except (KeyboardInterrupt, Abort):  # Ctrl-C: the server has shut down (click turns the interrupt into Abort)
        print("explorer stopped", file=sys.stderr)
    return 0
