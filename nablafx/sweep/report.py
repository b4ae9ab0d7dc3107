"""The sweep report: ``report.html`` and ``results.csv`` from a sweep folder's run folders.

The report reads only what the runs wrote (``sweeps/<name>/sweep.yaml`` and
``runs/<id>/{status.json, results.json, stdout.log, <media wavs>}``), never the Optuna
study, so it works for a sweep run on any storage, copied from another machine, or still
running. :func:`write_report` writes:

- ``report.html``: one self-contained page (inline CSS, inline SVG plots made with
  matplotlib, audio as ``data:`` URIs, a few lines of inline JavaScript to sort the
  leaderboard) that opens offline in any browser;
- ``results.csv``: one row per run folder, every scalar of ``results.json`` flattened
  (``test.esr``, ``axes.model``, ``speed.64``, ``per_setting.<setting>.esr``, ...).

What the report needs from a run (``results.json``, ``schema`` 1; everything but ``schema``
is optional and shows as "n/a" when missing)::

    id, sweep, status, axes {axis: label}, seed, overrides, family, conditioning,
    objective {name, value}, test {esr, l1, mrstft, lufs_diff},
    per_setting [{setting, esr, lufs_diff, ...}], params, macs_per_sample, receptive_field,
    speed [{block_size, times_real_time}], train {seconds, steps, epochs},
    curves {"train/loss": [[step, value], ...], "val/esr": [[step, value], ...]},
    media {input, target, prediction} (wav paths relative to the run folder),
    code_version, packages {name: version}, started, ended, host

and ``status.json``: ``state`` (pending | running | finished | failed), ``attempts``,
``returncode``, ``error``, ``host``, ``pid``, ``updated``. A ``results.json`` that is not
JSON, not an object or of another schema is listed under failures with the file named.

The objective is minimised unless ``sweep.yaml`` says ``objective: {direction: maximize}``
(or ``direction: maximize`` at the top level). Seeds of one configuration (the same
``axes`` apart from a ``seed`` axis) are grouped: means and sample standard deviations
(n - 1) over the seeds that finished.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

from nablafx.errors import ConfigError, MissingFileError, NablaError

SCHEMA = 1
LOG_TAIL_LINES = 30
AUDIO_SECONDS = 10.0
TEST_METRICS = ("esr", "l1", "mrstft", "lufs_diff")
CURVES = ("train/loss", "val/esr")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
NA = "n/a"


class NotASweepFolder(NablaError):
    """The folder given to the report holds neither ``sweep.yaml`` nor ``runs/``."""


# ----------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One run folder: its status, its results (``None`` unless a valid schema-1 file) and
    the problems found reading it (each naming the file)."""

    id: str
    folder: Path
    state: str
    status: dict
    results: dict | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Finished with a readable results.json: it goes on the leaderboard."""
        return self.results is not None and self.state == "finished"

    def get(self, *path: str) -> Any:
        value: Any = self.results or {}
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def number(self, *path: str) -> float | None:
        return as_number(self.get(*path))

    @property
    def axes(self) -> dict[str, str]:
        axes = self.get("axes")
        if isinstance(axes, dict):
            return {str(k): str(v) for k, v in axes.items()}
        return {}

    @property
    def seed(self) -> Any:
        seed = self.get("seed")
        return self.axes.get("seed") if seed is None else seed

    @property
    def family(self) -> str:
        return str(self.get("family") or NA)

    @property
    def conditioning(self) -> str:
        return str(self.get("conditioning") or NA)

    @property
    def objective(self) -> float | None:
        return self.number("objective", "value")

    @property
    def host(self) -> str | None:
        return self.get("host") or self.status.get("host")


@dataclass
class Sweep:
    name: str
    folder: Path
    yaml_text: str | None
    config: dict
    runs: list[Run]
    problems: list[str] = field(default_factory=list)

    @property
    def direction(self) -> str:
        objective = self.config.get("objective")
        direction = objective.get("direction") if isinstance(objective, dict) else None
        direction = direction or self.config.get("direction") or "minimize"
        return "maximize" if str(direction).lower().startswith("max") else "minimize"

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    @property
    def failures(self) -> list[Run]:
        return [run for run in self.runs if run.state == "failed" or run.problems]

    @property
    def in_progress(self) -> list[Run]:
        """Runs neither finished nor failed: pending, running, or a folder with no status.json yet."""
        return [run for run in self.runs if run.state not in ("finished", "failed") and not run.problems]


def as_number(value: Any) -> float | None:
    """A float for ints and floats (NaN and inf kept: a diverged run shows as such), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _read_object(path: Path, label: str, problems: list[str]) -> dict | None:
    """The JSON object in ``path``, or None with the reason appended to ``problems``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(f"{label}: unreadable ({error.strerror or error})")
        return None
    except UnicodeDecodeError:
        problems.append(f"{label}: not UTF-8 text")
        return None
    except json.JSONDecodeError as error:
        problems.append(f"{label}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{label}: not a JSON object")
        return None
    return data


def read_run(folder: Path, sweep_folder: Path) -> Run:
    """Read one run folder; never raises for what the run wrote."""
    rel = folder.relative_to(sweep_folder).as_posix()
    problems: list[str] = []
    status = _read_object(folder / "status.json", f"{rel}/status.json", problems) or {}
    results = _read_object(folder / "results.json", f"{rel}/results.json", problems)
    if results is not None and results.get("schema") != SCHEMA:
        found = results.get("schema", "missing")
        problems.append(f"{rel}/results.json: schema {found!r}, this report reads schema {SCHEMA}")
        results = None
    state = str(status.get("state") or ("finished" if results is not None else "unknown"))
    if state == "finished" and results is None and not problems:
        problems.append(f"{rel}/results.json: missing for a finished run")
    run_id = str((results or {}).get("id") or folder.name)
    return Run(run_id, folder, state, status, results, problems)


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Every run folder of ``sweep_dir`` (``runs/<id>/``), sorted by folder name."""
    folder = Path(sweep_dir)
    if not folder.is_dir():
        raise MissingFileError(f"no sweep folder {folder}")
    yaml_path = folder / "sweep.yaml"
    runs_dir = folder / "runs"
    if not yaml_path.is_file() and not runs_dir.is_dir():
        raise NotASweepFolder(
            f"{folder} is not a sweep folder: it has neither sweep.yaml nor runs/ "
            "(give the folder `nablafx sweep run` created, e.g. sweeps/<name>)"
        )
    problems: list[str] = []
    yaml_text, config = None, {}
    if yaml_path.is_file():
        yaml_text = yaml_path.read_text(encoding="utf-8", errors="replace")
        try:
            loaded = yaml.safe_load(yaml_text)
            if isinstance(loaded, dict):
                config = loaded
            elif loaded is not None:
                problems.append("sweep.yaml: not a mapping")
        except yaml.YAMLError as error:
            problems.append(f"sweep.yaml: not valid YAML ({str(error).splitlines()[0]})")
    runs = []
    if runs_dir.is_dir():
        runs = [read_run(sub, folder) for sub in sorted(runs_dir.iterdir()) if sub.is_dir()]
    name = config.get("name") or next((run.get("sweep") for run in runs if run.get("sweep")), None)
    return Sweep(str(name or folder.resolve().name), folder, yaml_text, config, runs, problems)


# ----------------------------------------------------------------------------- statistics


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int


def mean_std(values: Iterable[float | None]) -> Stat:
    """Mean and sample standard deviation (n - 1) of the values that are present;
    ``std`` is None below two values."""
    present = [v for v in values if v is not None]
    if not present:
        return Stat(None, None, 0)
    mean = sum(present) / len(present)
    if len(present) < 2:
        return Stat(mean, None, len(present))
    variance = sum((v - mean) ** 2 for v in present) / (len(present) - 1)
    return Stat(mean, math.sqrt(variance), len(present))


@dataclass
class Group:
    """The runs of one configuration: same axes apart from the seed."""

    key: tuple[tuple[str, str], ...]
    runs: list[Run]

    @property
    def label(self) -> str:
        if self.key and self.key[0][0] == "run":
            return self.key[0][1]
        return ", ".join(f"{axis}={label}" for axis, label in self.key) or "(no axes)"

    @property
    def family(self) -> str:
        return _joined(run.family for run in self.runs)

    @property
    def conditioning(self) -> str:
        return _joined(run.conditioning for run in self.runs)

    def stat(self, getter: Callable[[Run], float | None]) -> Stat:
        return mean_std(getter(run) for run in self.runs)

    @property
    def seeds(self) -> list:
        return [run.seed for run in self.runs]


def _joined(values: Iterable[str]) -> str:
    distinct = list(dict.fromkeys(values))
    return "/".join(distinct) if distinct else NA


def config_key(run: Run) -> tuple[tuple[str, str], ...]:
    axes = {axis: label for axis, label in run.axes.items() if axis != "seed"}
    if not axes and not run.axes:
        return (("run", run.id),)
    return tuple(sorted(axes.items()))


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by configuration, in first-seen order."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(config_key(run), []).append(run)
    return [Group(key, members) for key, members in groups.items()]


@dataclass
class Column:
    key: str
    header: str
    getter: Callable[[Run], float | None]
    kind: str = "float"  # float | count | lufs | seconds | speed


def leaderboard_columns(sweep: Sweep) -> list[Column]:
    objective_name = next(
        (str(run.get("objective", "name")) for run in sweep.finished if run.get("objective", "name")), "objective"
    )
    blocks = [min(points) for points in map(speed_points, sweep.finished) if points]
    block = min(blocks) if blocks else None
    columns = [Column("objective", f"objective ({objective_name})", lambda r: r.objective)]
    for metric, header in zip(TEST_METRICS, ("test ESR", "test L1", "test MR-STFT", "test LUFS diff")):
        kind = "lufs" if metric == "lufs_diff" else "float"
        columns.append(Column(f"test.{metric}", header, lambda r, m=metric: r.number("test", m), kind))
    columns += [
        Column("params", "params", lambda r: r.number("params"), "count"),
        Column("macs_per_sample", "MACs/sample", lambda r: r.number("macs_per_sample"), "count"),
        Column("speed.min_block", f"x real time @ {block or NA}", lambda r: speed_points(r).get(block), "speed"),
        Column("train.seconds", "train time", lambda r: r.number("train", "seconds"), "seconds"),
    ]
    return columns


def speed_points(run: Run) -> dict[int, float]:
    points = {}
    for entry in run.get("speed") or []:
        if isinstance(entry, dict):
            block, value = as_number(entry.get("block_size")), as_number(entry.get("times_real_time"))
            if block is not None and value is not None:
                points[int(block)] = value
    return points


@dataclass
class LeaderboardRow:
    group: Group
    stats: dict[str, Stat]


def leaderboard(sweep: Sweep) -> list[LeaderboardRow]:
    """One row per configuration of the finished runs, best objective mean first
    (configurations without an objective last)."""
    columns = leaderboard_columns(sweep)
    rows = [LeaderboardRow(group, {c.key: group.stat(c.getter) for c in columns}) for group in group_runs(sweep.finished)]
    sign = -1.0 if sweep.direction == "maximize" else 1.0

    def order(row: LeaderboardRow):
        mean = row.stats["objective"].mean
        if mean is None or math.isnan(mean):
            return (1, 0.0)
        return (0, sign * mean)

    return sorted(rows, key=order)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, both coordinates minimised (a point
    dominates another when it is no worse in both and better in one). Sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front: list[int] = []
    best_y = math.inf
    for i in order:
        x, y = points[i]
        if y < best_y:
            front.append(i)
            best_y = y
        elif front and (x, y) == tuple(points[front[-1]]):
            front.append(i)  # an exact duplicate of a front point is not dominated either
    return front


# ----------------------------------------------------------------------------- formatting


def fmt_number(value: float | None, kind: str = "float") -> str:
    if value is None:
        return NA
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if kind == "count":
        for limit, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
            if abs(value) >= limit:
                return f"{value / limit:.3g}{suffix}"
        return f"{value:.4g}"
    if kind == "seconds":
        return f"{value:.0f} s" if value >= 10 else f"{value:.3g} s"
    if kind == "lufs":
        return f"{value:.2f} LU"
    if kind == "speed":
        return f"{value:.3g}x"
    return f"{value:.4g}"


def fmt_stat(stat: Stat, kind: str = "float") -> str:
    if stat.mean is None:
        return NA
    text = fmt_number(stat.mean, kind)
    if stat.std is not None:
        finite = math.isfinite(stat.std)
        text += " ± " + (fmt_number(stat.std, "count") if kind == "count" or not finite else f"{stat.std:.2g}")
    return text


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def setting_label(setting: Any) -> str:
    if isinstance(setting, dict):
        return " ".join(f"{k}={v}" for k, v in setting.items())
    if isinstance(setting, (list, tuple)):
        return " ".join(str(v) for v in setting)
    return str(setting)


# ----------------------------------------------------------------------------- plots


class Palette:
    """Colour per family and marker per conditioning, fixed for the whole report."""

    def __init__(self, runs: Sequence[Run]):
        from matplotlib import colormaps

        families = sorted({run.family for run in runs})
        conditionings = sorted({run.conditioning for run in runs})
        cmap = colormaps["tab10"]
        self.colours = {name: cmap(i % 10) for i, name in enumerate(families)}
        self.markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(conditionings)}

    def colour(self, family: str):
        return self.colours.get(family, "grey")

    def marker(self, conditioning: str):
        return self.markers.get(conditioning, "o")

    def legends(self, ax, families: Iterable[str], conditionings: Iterable[str] | None = None) -> None:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=self.colour(f), marker="o", linestyle="", label=f) for f in sorted(set(families))]
        if conditionings is not None:
            handles += [
                Line2D([], [], color="0.4", marker=self.marker(c), linestyle="", label=f"cond: {c}")
                for c in sorted(set(conditionings))
            ]
        if handles:
            ax.legend(handles=handles, fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


_ID = re.compile(r'\bid="([^"]+)"')


def svg_of(fig, prefix: str) -> str:
    """The figure as inline SVG markup: no XML prologue, text as text, every id prefixed so
    that several inline SVGs in one page never share an id."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    ids = set(_ID.findall(text))
    for name in sorted(ids, key=len, reverse=True):
        new = f"{prefix}-{name}"
        text = text.replace(f'id="{name}"', f'id="{new}"')
        text = text.replace(f'href="#{name}"', f'href="#{new}"')
        text = text.replace(f"url(#{name})", f"url(#{new})")
    return text


def new_figure(width: float = 7.0, height: float = 4.2, ncols: int = 1, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _positive(values: Iterable[float]) -> bool:
    values = list(values)
    return bool(values) and all(v > 0 and math.isfinite(v) for v in values)


def pareto_plot(sweep: Sweep, board: list[LeaderboardRow], cost: str, palette: Palette):
    """ESR (mean over seeds, +/- std) against ``cost`` (``params`` or ``macs_per_sample``)
    per configuration, front drawn as a step line. None when no configuration has both."""
    entries = []
    for row in board:
        esr, x = row.stats["test.esr"], row.stats[cost]
        if esr.mean is None or x.mean is None or not math.isfinite(esr.mean) or not math.isfinite(x.mean):
            continue
        entries.append((row, x.mean, esr.mean, esr.std))
    if not entries:
        return None, []
    front = pareto_front([(x, y) for _, x, y, _ in entries])
    fig, axes = new_figure()
    ax = axes[0][0]
    for row, x, y, std in entries:
        ax.errorbar(
            x, y, yerr=std if std else None, color=palette.colour(row.group.family),
            marker=palette.marker(row.group.conditioning), markersize=7, linestyle="", capsize=2,
        )
    fx = [entries[i][1] for i in front]
    fy = [entries[i][2] for i in front]
    ax.plot(fx, fy, color="black", linewidth=1, drawstyle="steps-post", zorder=0, label="Pareto front")
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="black", linewidths=1, zorder=3)
    for i in front:
        ax.annotate(entries[i][0].group.label, (entries[i][1], entries[i][2]), fontsize="x-small",
                    xytext=(4, 4), textcoords="offset points")
    if _positive(x for _, x, _, _ in entries):
        ax.set_xscale("log")
    if _positive(y for _, _, y, _ in entries):
        ax.set_yscale("log")
    ax.set_xlabel("parameters" if cost == "params" else "MACs per sample")
    ax.set_ylabel("test ESR (mean over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    palette.legends(ax, [r.group.family for r, *_ in entries], [r.group.conditioning for r, *_ in entries])
    return fig, [entries[i][0] for i in front]


def speed_plot(board: list[LeaderboardRow], palette: Palette):
    """Times real time against block size, one panel per family, one line per configuration."""
    by_family: dict[str, list[tuple[str, dict[int, float]]]] = {}
    for row in board:
        blocks = sorted({b for run in row.group.runs for b in speed_points(run)})
        means = {}
        for block in blocks:
            stat = mean_std(speed_points(run).get(block) for run in row.group.runs)
            if stat.mean is not None:
                means[block] = stat.mean
        if means:
            by_family.setdefault(row.group.family, []).append((row.group.label, means))
    if not by_family:
        return None
    families = sorted(by_family)
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, axes = new_figure(4.0 * ncols, 3.2 * nrows, ncols, nrows)
    for index, family in enumerate(families):
        ax = axes[index // ncols][index % ncols]
        for label, means in by_family[family]:
            blocks = sorted(means)
            ax.plot(blocks, [means[b] for b in blocks], marker="o", markersize=3, label=label)
        ax.axhline(1.0, color="red", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        if _positive(v for _, m in by_family[family] for v in m.values()):
            ax.set_yscale("log")
        ax.set_title(family, color=palette.colour(family))
        ax.set_xlabel("block size (samples)")
        ax.set_ylabel("x real time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="xx-small", frameon=False, loc="best")
    for index in range(len(families), nrows * ncols):
        axes[index // ncols][index % ncols].set_visible(False)
    return fig


def axis_names(sweep: Sweep) -> list[str]:
    """Axes in the order the runs name them, sweep.yaml's order first where it lists them."""
    names: list[str] = []
    declared = sweep.config.get("axes")
    if isinstance(declared, dict):
        names += [str(name) for name in declared]
    elif isinstance(declared, list):
        names += [str(a.get("name")) for a in declared if isinstance(a, dict) and a.get("name")]
    for run in sweep.runs:
        names += list(run.axes)
    return [name for name in dict.fromkeys(names) if name != "seed"]


def axis_effect_plot(sweep: Sweep, axis: str, palette: Palette):
    """Objective of every finished run by the label it has on ``axis`` (dots, jittered by
    seed) with the mean per label; None when the axis has fewer than two labels."""
    runs = [run for run in sweep.finished if axis in run.axes and run.objective is not None]
    labels = list(dict.fromkeys(run.axes[axis] for run in runs))
    if len(labels) < 2:
        return None
    fig, axes = new_figure(max(4.0, 1.1 * len(labels) + 2), 3.6)
    ax = axes[0][0]
    means = []
    for position, label in enumerate(labels):
        members = [run for run in runs if run.axes[axis] == label]
        for k, run in enumerate(members):
            offset = (k - (len(members) - 1) / 2) * (0.5 / max(1, len(members)))
            ax.scatter(position + offset, run.objective, color=palette.colour(run.family),
                       marker=palette.marker(run.conditioning), s=24, alpha=0.8)
        means.append(mean_std(run.objective for run in members).mean)
    ax.plot(range(len(labels)), means, color="black", marker="_", markersize=24, markeredgewidth=1.5,
            linestyle="", label="mean")
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    if _positive(run.objective for run in runs):
        ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(next((str(r.get("objective", "name")) for r in runs if r.get("objective", "name")), "objective"))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    palette.legends(ax, [r.family for r in runs], [r.conditioning for r in runs])
    return fig


def run_label(run: Run) -> str:
    label = Group(config_key(run), [run]).label
    return f"{label} (seed {run.seed})" if run.seed is not None else label


def per_setting_matrix(runs: Sequence[Run], metric: str = "esr") -> tuple[list[Run], list[str], list[list[float | None]]]:
    """Rows: runs with per-setting metrics; columns: settings in first-seen order."""
    rows, settings = [], []
    for run in runs:
        entries = [e for e in (run.get("per_setting") or []) if isinstance(e, dict) and "setting" in e]
        if entries:
            rows.append((run, {setting_label(e["setting"]): as_number(e.get(metric)) for e in entries}))
            settings += [setting_label(e["setting"]) for e in entries]
    settings = list(dict.fromkeys(settings))
    return [r for r, _ in rows], settings, [[values.get(s) for s in settings] for _, values in rows]


def heatmap_plot(sweep: Sweep):
    import numpy as np
    from matplotlib.colors import LogNorm

    ordered = sorted(sweep.finished, key=lambda run: (config_key(run), str(run.seed)))
    runs, settings, matrix = per_setting_matrix(ordered)
    if not runs:
        return None
    data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    finite = data[np.isfinite(data)]
    fig, axes = new_figure(max(5.0, 0.6 * len(settings) + 3.5), max(2.5, 0.32 * len(runs) + 1.5))
    ax = axes[0][0]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size and (finite > 0).all() and finite.min() < finite.max() else None
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    if data.size <= 400:
        for (i, j), value in np.ndenumerate(data):
            if np.isfinite(value):
                shade = image.norm(value)
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize="xx-small",
                        color="black" if shade > 0.6 else "white")
    ax.set_xticks(range(len(settings)), settings, rotation=45, ha="right", fontsize="x-small")
    ax.set_yticks(range(len(runs)), [run_label(run) for run in runs], fontsize="x-small")
    fig.colorbar(image, ax=ax, label="test ESR")
    return fig


def curve_points(run: Run, name: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    curves = run.get("curves")
    for point in (curves.get(name) if isinstance(curves, dict) else None) or []:
        if isinstance(point, (list, tuple)) and len(point) == 2:
            step, value = as_number(point[0]), as_number(point[1])
            if step is not None and value is not None:
                steps.append(step)
                values.append(value)
    return steps, values


def curves_plot(sweep: Sweep, palette: Palette):
    runs = [run for run in sweep.finished if any(curve_points(run, name)[0] for name in CURVES)]
    if not runs:
        return None
    fig, axes = new_figure(11.0, 3.8, ncols=len(CURVES))
    for ax, name in zip(axes[0], CURVES):
        values_all = []
        for run in runs:
            steps, values = curve_points(run, name)
            if steps:
                ax.plot(steps, values, color=palette.colour(run.family), linewidth=1, alpha=0.8)
                values_all += values
        if _positive(values_all):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
    palette.legends(axes[0][0], [run.family for run in runs])
    return fig


# ----------------------------------------------------------------------------- audio


def audio_data_uri(path: Path, seconds: float = AUDIO_SECONDS) -> tuple[str | None, str]:
    """(``data:audio/wav;base64,...`` of the first ``seconds`` as 16-bit PCM, a caption);
    (None, why) when the file is missing or unreadable."""
    import numpy as np
    import soundfile as sf

    if not path.is_file():
        return None, f"file missing: {path.name}"
    try:
        info = sf.info(str(path))
        frames = int(seconds * info.samplerate)
        audio, rate = sf.read(str(path), frames=frames, always_2d=True, dtype="float32")
    except (RuntimeError, sf.LibsndfileError, OSError) as error:
        return None, f"unreadable: {path.name} ({error})"
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    caption = f"{info.duration:.2f} s, {rate} Hz"
    if info.duration > seconds:
        caption += f", first {seconds:g} s"
    if peak > 1.0:
        caption += f", peak {20 * math.log10(peak):+.1f} dBFS clipped in the player"
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), caption


def best_runs_per_family(sweep: Sweep) -> list[Run]:
    sign = -1.0 if sweep.direction == "maximize" else 1.0
    best: dict[str, Run] = {}
    for run in sweep.finished:
        value = run.objective
        if value is None or math.isnan(value):
            continue
        current = best.get(run.family)
        if current is None or sign * value < sign * current.objective:
            best[run.family] = run
    return [best[family] for family in sorted(best)]


# ----------------------------------------------------------------------------- CSV


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def csv_row(run: Run) -> dict[str, Any]:
    """One flat row: status fields, then every scalar of results.json. Lists become
    ``speed.<block>``, ``per_setting.<setting>.<metric>``; curves are left to the plots;
    overrides and packages are JSON text."""
    row: dict[str, Any] = {
        "id": run.id,
        "state": run.state,
        "attempts": run.status.get("attempts"),
        "returncode": run.status.get("returncode"),
        "error": run.status.get("error"),
        "problems": "; ".join(run.problems) or None,
    }
    results = dict(run.results or {})
    for key in ("curves",):
        results.pop(key, None)
    for key in ("overrides", "packages"):
        if key in results:
            row[key] = json.dumps(results.pop(key), sort_keys=True)
    speed = results.pop("speed", None)
    per_setting = results.pop("per_setting", None)
    flat: dict[str, Any] = {}
    flatten(results, "", flat)
    row.update({key: value for key, value in flat.items() if key not in row})
    for block, value in sorted(speed_points(run).items()):
        row[f"speed.{block}"] = value
    for entry in per_setting if isinstance(per_setting, list) else []:
        if isinstance(entry, dict) and "setting" in entry:
            name = setting_label(entry["setting"])
            for metric, value in entry.items():
                if metric != "setting":
                    row[f"per_setting.{name}.{metric}"] = value
    if "host" not in row and run.status.get("host"):
        row["host"] = run.status.get("host")
    return row


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return str(value)


def write_csv(sweep: Sweep, path: Path) -> Path:
    rows = [csv_row(run) for run in sweep.runs]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_text(row.get(key)) for key in columns})
    return path


# ----------------------------------------------------------------------------- HTML

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 1.5em 3em; color: #222; line-height: 1.45; }
h1 { margin-top: 1em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { background: #f3f3f3; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; }
tr.front td:first-child { font-weight: bold; }
div.wide { overflow-x: auto; }
#leaderboard td, #leaderboard th { white-space: nowrap; }
table.kv th { background: #f3f3f3; font-weight: normal; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: .6em; overflow-x: auto; font-size: .85em; }
pre#js-errors { background: #fee; border-color: #c00; color: #900; }
pre#js-errors:empty { display: none; }
figure.plot { margin: 1em 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: .9em; }
.player { display: flex; flex-wrap: wrap; gap: 1em; margin-bottom: 1.2em; }
.player div { min-width: 300px; } audio { width: 300px; display: block; }
.failure { border-left: 4px solid #c00; padding-left: 1em; margin: 1.2em 0; }
"""

ONERROR_JS = """
window.onerror = function (message, source, line, column) {
  var text = message + " (" + (source || "inline") + ":" + line + ":" + column + ")\\n";
  var pre = document.getElementById("js-errors");
  if (pre) { pre.textContent += text; } else { (window.pendingErrors = window.pendingErrors || []).push(text); }
  return false;
};
"""

SORT_JS = """
(function () {
  var pending = window.pendingErrors || [];
  var pre = document.getElementById("js-errors");
  for (var i = 0; i < pending.length; i++) { pre.textContent += pending[i]; }
  function value(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function compare(type, ascending) {
    return function (a, b) {
      if (type === "number") {
        var x = parseFloat(a), y = parseFloat(b), nx = isNaN(x), ny = isNaN(y);
        if (nx || ny) { return nx === ny ? 0 : (nx ? 1 : -1); }
        return ascending ? x - y : y - x;
      }
      return ascending ? a.localeCompare(b) : b.localeCompare(a);
    };
  }
  function sortBy(table, column) {
    var head = table.tHead.rows[0].cells[column];
    var ascending = head.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var cmp = compare(head.getAttribute("data-type") || "text", ascending);
    rows.sort(function (r1, r2) { return cmp(value(r1.cells[column]), value(r2.cells[column])); });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    head.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.tabIndex = 0;
      th.title = "click to sort";
      th.addEventListener("click", function () { sortBy(table, column); });
      th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sortBy(table, column); } });
    });
    table.setAttribute("data-sortable", "ready");
  });
})();
"""

SECTIONS = (
    ("provenance", "Provenance"),
    ("leaderboard", "Leaderboard"),
    ("pareto", "Error vs size"),
    ("speed", "Speed"),
    ("axes", "Axis effects"),
    ("settings", "Per-setting error"),
    ("curves", "Training curves"),
    ("players", "Listen"),
    ("failures", "Failures"),
)


class Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.plots = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, name: str, fig, caption: str, missing: str = "") -> None:
        """The plot ``fig`` with its caption, or, where there was nothing to plot (``fig`` is
        None), a note saying what is ``missing``."""
        if fig is None:
            self.note(f"{NA}: {missing}")
            return
        self.plots += 1
        svg = svg_of(fig, f"fig{self.plots}")
        self.add(f'<figure class="plot" data-plot="{esc(name)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>')

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{esc(text)}</p>')


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(NA if c is None else c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(NA if v is None else v)}</td></tr>' for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _times(sweep: Sweep, key: str) -> list[str]:
    return sorted(str(run.get(key)) for run in sweep.finished if run.get(key))


def run_state(run: Run) -> str:
    """The run's state for counting: a finished run whose results cannot be read is not
    counted with those on the leaderboard."""
    if run.problems and run.state != "failed":
        return f"{run.state}, unreadable files"
    return run.state


def provenance_section(page: Page, sweep: Sweep) -> None:
    states = Counter(run_state(run) for run in sweep.runs)
    finished = sweep.finished
    started, ended = _times(sweep, "started"), _times(sweep, "ended")
    page.add(kv_table([
        ("sweep", sweep.name),
        ("folder", str(sweep.folder.resolve())),
        ("objective", f"{next((r.get('objective', 'name') for r in finished if r.get('objective', 'name')), NA)} ({sweep.direction}d)"),
        ("runs", ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"),
        ("on the leaderboard", f"{len(finished)} runs in {len(group_runs(finished))} configurations"),
        ("first run started", started[0] if started else NA),
        ("last run ended", ended[-1] if ended else NA),
        ("report written", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]))
    for problem in sweep.problems:
        page.note(problem)
    page.add("<h3>Code versions</h3>")
    versions = Counter(str(run.get("code_version") or NA) for run in finished)
    page.add(table(["code version", "runs"], sorted(versions.items())) if versions else f'<p class="note">{NA}</p>')
    if len(versions) > 1:
        page.note("The runs come from more than one code version: compare them with care.")
    page.add("<h3>Hosts</h3>")
    hosts = Counter(str(run.host or NA) for run in sweep.runs)
    page.add(table(["host", "runs"], sorted(hosts.items())) if hosts else f'<p class="note">{NA}</p>')
    page.add("<h3>Packages</h3>")
    packages: dict[str, Counter] = {}
    for run in finished:
        for name, version in (run.get("packages") or {}).items() if isinstance(run.get("packages"), dict) else []:
            packages.setdefault(str(name), Counter())[str(version)] += 1
    if packages:
        page.add(table(["package", "version (runs)"], [
            (name, ", ".join(f"{v} ({n})" if len(counts) > 1 else v for v, n in sorted(counts.items())))
            for name, counts in sorted(packages.items())
        ]))
    else:
        page.note(f"{NA}: no run recorded its packages")
    progress = sweep.in_progress
    if progress:
        page.add("<h3>Not finished yet</h3>")
        page.add(table(["run", "state", "attempts", "host", "pid", "updated"], [
            (run.id, run.state, run.status.get("attempts"), run.status.get("host"), run.status.get("pid"),
             run.status.get("updated")) for run in progress
        ]))
    page.add("<h3>sweep.yaml</h3>")
    page.add(f"<pre>{esc(sweep.yaml_text)}</pre>" if sweep.yaml_text is not None else f'<p class="note">{NA}: no sweep.yaml</p>')


def leaderboard_section(page: Page, sweep: Sweep, board: list[LeaderboardRow], front_labels: set[str]) -> None:
    if not board:
        page.note("No run has finished yet.")
        return
    columns = leaderboard_columns(sweep)
    axes = axis_names(sweep)
    heads = ['<th data-type="number">rank</th>']
    heads += [f'<th data-type="text">{esc(axis)}</th>' for axis in axes]
    heads += ['<th data-type="text">family</th>', '<th data-type="text">conditioning</th>', '<th data-type="number">seeds</th>']
    initial = "ascending" if sweep.direction == "minimize" else "descending"  # the order the rows come in
    heads += [
        f'<th data-type="number" data-key="{esc(c.key)}"'
        + (f' aria-sort="{initial}"' if c.key == "objective" else "") + f">{esc(c.header)}</th>"
        for c in columns
    ]
    body = []
    for rank, row in enumerate(board, 1):
        group = row.group
        axes_of = dict(group.key)
        cells = [f'<td class="num" data-sort="{rank}">{rank}</td>']
        cells += [f"<td>{esc(axes_of.get(axis, NA))}</td>" for axis in axes]
        cells += [f"<td>{esc(group.family)}</td>", f"<td>{esc(group.conditioning)}</td>"]
        seeds = ", ".join(str(s) for s in group.seeds if s is not None)
        cells.append(f'<td class="num" data-sort="{len(group.runs)}" title="seeds {esc(seeds)}">{len(group.runs)}</td>')
        for column in columns:
            stat = row.stats[column.key]
            sort = "" if stat.mean is None or math.isnan(stat.mean) else repr(stat.mean)
            std = "" if stat.std is None else repr(stat.std)
            cells.append(f'<td class="num" data-sort="{sort}" data-std="{std}" data-n="{stat.n}">{esc(fmt_stat(stat, column.kind))}</td>')
        css = ' class="front"' if group.label in front_labels else ""
        body.append(f'<tr{css} data-config="{esc(group.label)}">' + "".join(cells) + "</tr>")
    page.add(
        '<div class="wide"><table id="leaderboard" class="sortable"><thead><tr>' + "".join(heads) + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table></div>"
    )
    page.note(
        f"One row per configuration (same axes, any seed), best objective first ({sweep.direction}d); "
        "mean ± sample standard deviation over the seeds that finished; click a header to sort. "
        "Bold rank: on the Pareto front of test ESR vs parameters. 'x real time' is streaming speed at the "
        "smallest block size measured (higher is faster; below 1 cannot run live)."
    )


def failures_section(page: Page, sweep: Sweep) -> None:
    failures = sweep.failures
    if not failures:
        page.note("No run failed.")
        return
    for run in failures:
        rel = run.folder.relative_to(sweep.folder).as_posix()
        page.add(f'<div class="failure" data-run="{esc(run.id)}"><h3>{esc(run.id)}: {esc(run_state(run))}</h3>')
        page.add(kv_table([
            ("state", run.state), ("folder", rel),
            *([("axes", ", ".join(f"{k}={v}" for k, v in run.axes.items()))] if run.axes else []),
            ("attempts", run.status.get("attempts")), ("return code", run.status.get("returncode")),
            ("error", run.status.get("error")), ("host", run.host), ("updated", run.status.get("updated")),
        ]))
        for problem in run.problems:
            page.add(f'<p class="problem"><strong>{esc(problem)}</strong></p>')
        overrides = run.folder / "overrides.yaml"
        if run.results is None and overrides.is_file():
            page.add(f'<p class="note">{esc(rel)}/overrides.yaml</p>')
            page.add(f"<pre>{esc(overrides.read_text(encoding='utf-8', errors='replace'))}</pre>")
        log = run.folder / "stdout.log"
        if log.is_file():
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = lines[-LOG_TAIL_LINES:]
            page.add(f"<p class=\"note\">last {len(tail)} of {len(lines)} lines of {esc(rel)}/stdout.log</p>")
            page.add(f'<pre class="log">{esc(chr(10).join(tail))}</pre>')
        else:
            page.note(f"{rel}/stdout.log: missing")
        page.add("</div>")


def players_section(page: Page, sweep: Sweep, audio_seconds: float) -> None:
    best = best_runs_per_family(sweep)
    if not best:
        page.note("No finished run to listen to.")
        return
    for run in best:
        page.add(f'<h3>{esc(run.family)}: {esc(run_label(run))}</h3>')
        page.note(f"run {run.id}, objective {fmt_number(run.objective)}, conditioning {run.conditioning}")
        media = run.get("media") if isinstance(run.get("media"), dict) else {}
        page.add(f'<div class="player" data-run="{esc(run.id)}">')
        for role in ("input", "target", "prediction"):
            page.add(f"<div><strong>{role}</strong>")
            if not media.get(role):
                page.add(f'<p class="note">{NA}</p></div>')
                continue
            path = Path(str(media[role]))
            uri, caption = audio_data_uri(path if path.is_absolute() else run.folder / path, audio_seconds)
            if uri is None:
                page.add(f'<p class="note">{esc(NA + ": " + caption)}</p></div>')
            else:
                page.add(f'<audio controls preload="metadata" data-role="{role}" src="{uri}"></audio>'
                         f'<p class="note">{esc(caption)}</p></div>')
        page.add("</div>")


def render_html(sweep: Sweep, audio_seconds: float = AUDIO_SECONDS) -> str:
    board = leaderboard(sweep)
    palette = Palette(sweep.runs)
    pareto = {cost: pareto_plot(sweep, board, cost, palette) for cost in ("params", "macs_per_sample")}
    front_labels = {row.group.label for row in pareto["params"][1]}
    page = Page()
    page.add('<section id="provenance"><h2>Provenance</h2>')
    provenance_section(page, sweep)
    page.add('</section><section id="leaderboard-section"><h2>Leaderboard</h2>')
    leaderboard_section(page, sweep, board, front_labels)
    page.add('</section><section id="pareto"><h2>Error vs size</h2>')
    for cost, name in (("params", "parameters"), ("macs_per_sample", "MACs per sample")):
        fig, front = pareto[cost]
        page.figure(f"pareto-{cost}", fig, (
            f"Test ESR (mean over seeds, bars ± std) against {name}, one point per configuration; "
            f"colour = family, marker = conditioning; ringed and joined: the Pareto front "
            f"({', '.join(row.group.label for row in front)})."
        ), missing=f"no finished configuration has both a test ESR and {name}")
    page.add("</section>")

    page.add('<section id="speed"><h2>Speed</h2>')
    page.figure("speed", speed_plot(board, palette),
                "Streaming speed in times real time (audio seconds per CPU second, mean over seeds) "
                "against host block size, one panel per family; dashed: real time.",
                missing="no run recorded streaming speed")
    page.add('</section><section id="axes"><h2>Axis effects</h2>')
    shown = 0
    for axis in axis_names(sweep):
        fig = axis_effect_plot(sweep, axis, palette)
        if fig is not None:
            shown += 1
            page.figure(f"axis-{axis}", fig, f"Objective of every finished run by {axis} (dots: runs, "
                                             "colour = family, marker = conditioning; bars: means).")
    if not shown:
        page.note(f"{NA}: no axis has two values among the finished runs")
    page.add('</section><section id="settings"><h2>Per-setting error</h2>')
    page.figure("per-setting", heatmap_plot(sweep),
                "Test ESR of each run (rows) at each knob setting of the test set (columns); grey: not measured.",
                missing="no run recorded per-setting metrics (the data has no knobs, or none finished)")
    page.add('</section><section id="curves"><h2>Training curves</h2>')
    page.figure("curves", curves_plot(sweep, palette),
                "Training loss and validation ESR against step, one line per run, colour = family.",
                missing="no run recorded training curves")
    page.add('</section><section id="players"><h2>Listen</h2>')
    page.note("The best run of each family by the objective: input, target (the device) and the model's prediction.")
    players_section(page, sweep, audio_seconds)
    page.add('</section><section id="failures"><h2>Failures</h2>')
    failures_section(page, sweep)
    page.add("</section>")

    nav = "".join(
        f'<a href="#{"leaderboard-section" if key == "leaderboard" else key}">{esc(title)}</a>' for key, title in SECTIONS
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Sweep report: {esc(sweep.name)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style><script>{ONERROR_JS}</script></head>\n<body>"
        '<pre id="js-errors"></pre>'
        f"<h1>Sweep report: {esc(sweep.name)}</h1><nav>{nav}</nav>\n"
        + "\n".join(page.parts)
        + f"\n<script>{SORT_JS}</script></body></html>\n"
    )


def write_report(sweep_dir: str | Path, out: str | Path | None = None, audio_seconds: float = AUDIO_SECONDS) -> Path:
    """Write ``report.html`` (or ``out``) and ``results.csv`` next to it; return the HTML path.

    ``out`` defaults to ``<sweep_dir>/report.html``. Reads the run folders only, so it can run
    while the sweep is still going (unfinished runs are listed, not plotted).
    """
    if not audio_seconds > 0:
        raise ConfigError(f"audio_seconds must be > 0 (got {audio_seconds}): the seconds of each clip in the players")
    sweep = load_sweep(sweep_dir)
    path = Path(out) if out is not None else sweep.folder / "report.html"
    if path.is_dir():
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(sweep, audio_seconds)
    path.write_text(text, encoding="utf-8")
    write_csv(sweep, path.parent / "results.csv")
    return path
