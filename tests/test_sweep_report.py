"""The sweep report (nablafx.sweep.report, `nablafx sweep report`): numbers against hand
computations, the CSV read back, the page self-contained, and the page opened in a real
headless Chromium (no JavaScript error, its plots and players present, the table sorts)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from sweep_fixtures import (
    BROKEN_JSON, CONDITIONINGS, FAILED, MODELS, RUNNING, SEEDS, SPARSE, WRONG_SCHEMA, build_sweep,
)

from nablafx.commands import sweep_report
from nablafx.errors import ConfigError, MissingFileError
from nablafx.sweep.report import (
    NotASweepFolder, leaderboard, load_sweep, pareto_front, write_report,
)

CHROMIUM = "/usr/bin/chromium"
# pareto-params, pareto-macs, speed, axis-model, axis-cond, per-setting heatmap, curves
EXPECTED_PLOTS = {
    "pareto-params", "pareto-macs_per_sample", "speed", "axis-model", "axis-cond", "per-setting", "curves",
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    fixture = build_sweep(tmp_path_factory.mktemp("sweep"))
    fixture.report = write_report(fixture.folder)
    fixture.html = fixture.report.read_text(encoding="utf-8")
    return fixture


class Dom(HTMLParser):
    """Every start tag with its attributes, and the text inside elements that have an id."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in self.VOID:
            self._open.append((tag, attrs.get("id")))
            if attrs.get("id"):
                self.text_by_id.setdefault(attrs["id"], "")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        names = [name for name, _ in self._open]
        if tag in names:  # close up to the innermost open element of that name
            del self._open[len(names) - 1 - names[::-1].index(tag):]

    def handle_data(self, data):
        for _, element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def leaderboard_cells(html_text: str) -> dict[str, dict[str, dict]]:
    """config label -> column key -> attributes of that leaderboard cell."""
    table = re.search(r'<table id="leaderboard".*?</table>', html_text, re.S).group(0)
    keys = [k or None for k in re.findall(r'<th data-type="[^"]+"(?: data-key="([^"]+)")?[^>]*>', table)]
    rows = {}
    for config, body in re.findall(r'<tr[^>]*data-config="([^"]+)">(.*?)</tr>', table, re.S):
        cells = [dict(re.findall(r'(data-[a-z]+)="([^"]*)"', attrs)) for attrs in re.findall(r"<td([^>]*)>", body)]
        rows[config.replace("&amp;", "&")] = {key: cell for key, cell in zip(keys, cells) if key}
    return rows


def label(model: str, cond: str) -> str:
    return f"cond={cond}, model={model}"


def valid_results(fixture, model, cond):
    return [fixture.results[fixture.id(model, cond, s)] for s in SEEDS if fixture.id(model, cond, s) in fixture.results]


# ----------------------------------------------------------------------------- numbers


def test_leaderboard_means_and_stds_match_a_hand_computation(sweep):
    board = {row.group.label: row for row in leaderboard(load_sweep(sweep.folder))}
    cells = leaderboard_cells(sweep.html)
    assert set(board) == set(cells) == {label(m, c) for m in MODELS for c in CONDITIONINGS}
    getters = {
        "objective": lambda r: r["objective"]["value"],
        "test.esr": lambda r: r["test"]["esr"],
        "test.l1": lambda r: r["test"]["l1"],
        "test.mrstft": lambda r: r["test"]["mrstft"],
        "test.lufs_diff": lambda r: r["test"]["lufs_diff"],
        "params": lambda r: r["params"],
        "train.seconds": lambda r: r["train"]["seconds"],
    }
    two_seed_configs = 0
    for model, cond in itertools.product(MODELS, CONDITIONINGS):
        results = valid_results(sweep, model, cond)
        row, cell = board[label(model, cond)], cells[label(model, cond)]
        assert len(row.group.runs) == len(results)
        for key, get in getters.items():
            values = [get(r) for r in results]
            if len(values) == 2:
                a, b = values
                mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)  # sample std of two values
            else:
                (mean,), std = values, None
            assert row.stats[key].mean == pytest.approx(mean, rel=1e-12), (model, cond, key)
            assert float(cell[key]["data-sort"]) == pytest.approx(mean, rel=1e-12)
            if std is None:
                assert row.stats[key].std is None and cell[key]["data-std"] == ""
            else:
                assert row.stats[key].std == pytest.approx(std, rel=1e-9, abs=1e-15), (model, cond, key)
                assert float(cell[key]["data-std"]) == pytest.approx(std, rel=1e-9, abs=1e-15)
            assert int(cell[key]["data-n"]) == len(values)
        two_seed_configs += len(results) == 2
    assert two_seed_configs == 4
    assert '<th data-type="number" data-key="objective" aria-sort="ascending">' in sweep.html
    # MACs of lstm-32/film: the seed-0 run does not record them, so the mean is seed 1's alone
    lstm_film = board[label("lstm-32", "film")].stats["macs_per_sample"]
    assert (lstm_film.mean, lstm_film.std, lstm_film.n) == (MODELS["lstm-32"][2], None, 1)
    # best objective first
    means = [row.stats["objective"].mean for row in leaderboard(load_sweep(sweep.folder))]
    assert means == sorted(means)


def brute_force_front(points):
    return {
        i for i, (x, y) in enumerate(points)
        if not any(u <= x and v <= y and (u < x or v < y) for j, (u, v) in enumerate(points) if j != i)
    }


def test_pareto_front_matches_brute_force_on_random_points_with_ties():
    rng = random.Random(7)
    for trial in range(300):
        n = rng.randint(1, 25)
        grid = rng.choice([3, 10, 1000])  # coarse grids give ties and exact duplicates
        points = [(rng.randint(0, grid), rng.randint(0, grid)) for _ in range(n)]
        front = pareto_front(points)
        assert set(front) == brute_force_front(points), points
        assert len(front) == len(set(front))
        assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
    assert pareto_front([]) == []


def test_report_marks_the_brute_force_front_of_esr_vs_params(sweep):
    configs = [(m, c) for m in MODELS for c in CONDITIONINGS]
    points = []
    for model, cond in configs:
        results = valid_results(sweep, model, cond)
        points.append((sum(r["params"] for r in results) / len(results),
                       sum(r["test"]["esr"] for r in results) / len(results)))
    expected = {label(*configs[i]) for i in brute_force_front(points)}
    marked = set(re.findall(r'<tr class="front" data-config="([^"]+)">', sweep.html))
    assert marked == expected and len(expected) >= 2
    caption = re.search(r'data-plot="pareto-params">.*?<figcaption>(.*?)</figcaption>', sweep.html, re.S).group(1)
    assert all(name in caption for name in expected)


# ----------------------------------------------------------------------------- CSV


def test_results_csv_has_one_row_per_run_and_round_trips(sweep):
    with open(sweep.folder / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(sweep.ids.values())  # 16 run folders, whatever their state
    for rid, results in sweep.results.items():
        row = rows[rid]
        assert row["state"] == "finished" and row["problems"] == ""
        assert row["axes.model"] == results["axes"]["model"] and row["axes.cond"] == results["axes"]["cond"]
        assert int(row["seed"]) == results["seed"]
        assert row["family"] == results["family"] and row["conditioning"] == results["conditioning"]
        assert float(row["objective.value"]) == results["objective"]["value"]  # exact: floats written with repr
        for metric, value in results["test"].items():
            assert float(row[f"test.{metric}"]) == value
        assert int(row["params"]) == results["params"]
        assert float(row["train.seconds"]) == results["train"]["seconds"]
        assert row["code_version"] == results["code_version"] and row["host"] == results["host"]
        assert json.loads(row["overrides"]) == results["overrides"]
        if rid == sweep.id(*SPARSE):
            assert row["macs_per_sample"] == "" and row["speed.64"] == "" and row["packages"] == ""
            continue
        assert json.loads(row["packages"]) == results["packages"]
        assert int(row["macs_per_sample"]) == results["macs_per_sample"]
        for entry in results["speed"]:
            assert float(row[f"speed.{entry['block_size']}"]) == entry["times_real_time"]
        for entry in results["per_setting"]:
            assert float(row[f"per_setting.{entry['setting']}.esr"]) == entry["esr"]
            assert float(row[f"per_setting.{entry['setting']}.lufs_diff"]) == entry["lufs_diff"]
    failed = rows[sweep.id(*FAILED)]
    assert failed["state"] == "failed" and failed["returncode"] == "1" and "NaN" in failed["error"]
    assert rows[sweep.id(*RUNNING)]["state"] == "running"
    assert "not valid JSON" in rows[sweep.id(*BROKEN_JSON)]["problems"]
    assert "schema 99" in rows[sweep.id(*WRONG_SCHEMA)]["problems"]


# ----------------------------------------------------------------------------- HTML


def test_html_is_self_contained(sweep):
    html_text = sweep.html
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html_text, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html_text, re.I)
    assert "<link" not in html_text and "@import" not in html_text
    dom = Dom(html_text)
    sources = [a["src"] for t, a in dom.tags if "src" in a]
    assert sources and all(s.startswith("data:audio/wav;base64,") for s in sources)
    hrefs = [a.get("href") or a.get("xlink:href") for t, a in dom.tags if "href" in a or "xlink:href" in a]
    # in-page links and the heatmap's raster (matplotlib embeds imshow as a PNG data: URI)
    assert hrefs and all(h.startswith(("#", "data:image/png;base64,")) for h in hrefs), {h[:40] for h in hrefs}
    # the inline SVGs never share an id (each figure's ids are prefixed)
    ids = [a["id"] for t, a in dom.tags if "id" in a]
    assert len(ids) == len(set(ids))


def test_html_sections_failures_and_unfinished_runs(sweep):
    html_text = sweep.html
    for section in ("provenance", "leaderboard-section", "pareto", "speed", "axes", "settings", "curves",
                    "players", "failures"):
        assert f'<section id="{section}">' in html_text
    assert set(re.findall(r'data-plot="([^"]+)"', html_text)) == EXPECTED_PLOTS
    failures = re.search(r'<section id="failures">.*?</section>', html_text, re.S).group(0)
    failed = re.search(rf'<div class="failure" data-run="{sweep.id(*FAILED)}">.*?</div>', failures, re.S).group(0)
    assert "RuntimeError: loss is NaN at step 120 (retried 1 time)" in failed
    assert "last 30 of 60 lines" in failed
    assert "step 30 loss" in failed and "step 29 loss" not in failed
    assert "&lt;see traceback&gt;" in failed  # log text is escaped
    assert "model: lstm-32" in failed  # overrides.yaml of a run without results
    assert f"runs/{sweep.id(*BROKEN_JSON)}/results.json: not valid JSON" in failures
    assert f"runs/{sweep.id(*WRONG_SCHEMA)}/results.json: schema 99, this report reads schema 1" in failures
    assert sweep.id(*RUNNING) not in failures
    provenance = re.search(r'<section id="provenance">.*?</section>', html_text, re.S).group(0)
    assert sweep.id(*RUNNING) in provenance and "1 failed, 12 finished, 2 finished, unreadable files, 1 running" in provenance
    assert "12 runs in 8 configurations" in provenance
    for text in ("c977dd5", "node-a", "node-b", "optuna", "5.1.0", "2026-12-03T05:10:00Z", "2026-12-03T05:21:30Z",
                 "max_retries: 1"):
        assert text in provenance
    # one player per family, its best run by the objective
    players = re.findall(r'<div class="player" data-run="([^"]+)">', html_text)
    best = {}
    for rid, results in sweep.results.items():
        family = results["family"]
        if "media" in results and (family not in best or results["objective"]["value"] < best[family][1]):
            best[family] = (rid, results["objective"]["value"])
    assert sorted(players) == sorted(rid for rid, _ in best.values()) and len(players) == 3


def test_report_tolerates_missing_optional_fields_and_empty_sweeps(tmp_path):
    folder = tmp_path / "bare"
    (folder / "runs" / "r1").mkdir(parents=True)
    (folder / "runs" / "r1" / "results.json").write_text(json.dumps({"schema": 1, "id": "r1"}))
    (folder / "runs" / "r2").mkdir()
    (folder / "runs" / "r2" / "status.json").write_text("{not json")
    odd = folder / "runs" / "r3"
    (odd / "media").mkdir(parents=True)
    (odd / "media" / "in.wav").write_bytes(b"not a wav file at all")
    (odd / "results.json").write_text(json.dumps({  # every optional field of the wrong type
        "schema": 1, "id": "r3", "family": "lstm", "objective": {"name": "test/esr", "value": 0.1},
        "test": [1, 2], "axes": "oops", "params": "12", "speed": [{"block_size": 64}, "x"],
        "curves": {"train/loss": [[1], "a"]}, "per_setting": "no", "packages": ["a"],
        "media": {"input": "media/in.wav", "target": "../nope.wav"},
    }))
    (folder / "runs" / "r4").mkdir()
    (folder / "runs" / "r4" / "results.json").write_text(
        json.dumps({"schema": 1, "id": "r4", "family": "tcn", "objective": {"value": float("nan")}})
    )
    (folder / "runs" / "r5").mkdir()  # just created by the engine: no status.json yet
    path = write_report(folder)
    text = path.read_text()
    assert re.search(r"Not finished yet</h3>\s*<table><thead>.*?<td>r5</td><td>unknown</td>", text, re.S)
    players = re.search(r'<section id="players">.*?</section>', text, re.S).group(0)
    assert 'data-run="r3"' in players and 'data-run="r4"' not in players  # a NaN objective is never "best"
    assert "n/a: unreadable: in.wav" in players and "n/a: file missing: nope.wav" in players
    assert "<audio" not in players
    assert leaderboard_cells(text)["r4"]["objective"]["data-sort"] == ""
    assert "No run failed." not in text and "r2/status.json: not valid JSON" in text
    assert "no run recorded streaming speed" in text and "no run recorded training curves" in text
    cells = leaderboard_cells(text)
    assert cells["r1"]["objective"]["data-sort"] == "" and "<td class=\"num\" data-sort=\"\" data-std=\"\" data-n=\"0\">n/a</td>" in text
    assert "<svg" not in text
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    (empty / "sweep.yaml").write_text("name: nothing-yet\n")
    text = write_report(empty).read_text()
    assert "Sweep report: nothing-yet" in text and "No run has finished yet." in text
    with open(empty / "results.csv") as handle:
        assert handle.read() == "\n" or list(csv.reader(handle)) == []
    with pytest.raises(NotASweepFolder, match="neither sweep.yaml nor runs/"):
        write_report(tmp_path)
    with pytest.raises(MissingFileError):
        write_report(tmp_path / "absent")
    with pytest.raises(ConfigError, match="audio_seconds"):
        write_report(empty, audio_seconds=0)


def test_command_through_the_nablafx_parser_writes_report_and_csv_and_prints_the_path(sweep, tmp_path, capsys):
    from nablafx.cli import build_parser

    assert sweep_report.NAME == "report"
    out = tmp_path / "elsewhere" / "page.html"
    parser = build_parser([("sweep", "sweep_report")])  # how cli.py registers it: `nablafx sweep report`
    args = parser.parse_args(["sweep", "report", str(sweep.folder), "--out", str(out), "--audio-seconds", "0.1"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.is_file() and (out.parent / "results.csv").is_file()
    # 0.1 s of a 16 kHz clip as 16-bit PCM: 1600 samples, a 44-byte header, base64
    source = re.search(r'<audio[^>]*src="data:audio/wav;base64,([^"]+)"', out.read_text()).group(1)
    assert len(source) == 4 * math.ceil((44 + 2 * 1600) / 3)
    assert parser.parse_args(["sweep", "report", "DIR"]).out is None


# ----------------------------------------------------------------------------- browser

HARNESS = """
<script>
(function () {
  var result = {errorsBefore: document.getElementById("js-errors").textContent};
  var table = document.getElementById("leaderboard");
  result.ready = table.getAttribute("data-sortable");
  var heads = table.tHead.rows[0].cells;
  function column(key) { for (var i = 0; i < heads.length; i++) { if (heads[i].getAttribute("data-key") === key) return i; } }
  function values(i) { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[i].getAttribute("data-sort"); }); }
  function configs() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.getAttribute("data-config"); }); }
  heads[column("params")].click();
  result.paramsAscending = values(column("params"));
  heads[column("objective")].click();
  result.objectiveAscending = configs();
  heads[column("objective")].click();
  result.objectiveDescending = configs();
  result.ariaSort = heads[column("objective")].getAttribute("aria-sort");
  var pre = document.createElement("pre");
  pre.id = "harness";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
  Array.prototype.forEach.call(document.querySelectorAll("audio"), function (audio) {
    function mark() { audio.setAttribute("data-duration", String(audio.duration)); }
    if (audio.readyState >= 1) { mark(); } else { audio.addEventListener("loadedmetadata", mark); }
    audio.addEventListener("error", function () { audio.setAttribute("data-error", String(audio.error && audio.error.code)); });
  });
})();
</script>
<script>throw new Error("harness-probe: window.onerror works");</script>
"""


def test_report_in_headless_chromium(sweep, tmp_path):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail("chromium is not installed: the report is checked in a real browser; apt-get install chromium")
    browser = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    page = tmp_path / "report.html"
    page.write_text(sweep.html.replace("</body>", HARNESS + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    profile.mkdir()
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom(done.stdout)
    assert "harness" in dom.text_by_id, "the page's scripts did not run:\n" + done.stderr[-2000:]
    result = json.loads(dom.text_by_id["harness"])
    # no error from the report's own scripts; the probe shows window.onerror reports to #js-errors
    assert result["errorsBefore"] == ""
    errors = [line for line in dom.text_by_id["js-errors"].splitlines() if line.strip()]
    assert len(errors) == 1 and "harness-probe" in errors[0], errors
    # plots: one inline <svg> per figure
    figures = dom.all("figure")
    assert {f.get("data-plot") for f in figures} == EXPECTED_PLOTS
    assert len(dom.all("svg")) == len(EXPECTED_PLOTS)
    # players: 3 families x (input, target, prediction), each a data: URI the browser decoded
    audios = dom.all("audio")
    assert len(audios) == 9
    for audio in audios:
        assert "controls" in audio and audio["src"].startswith("data:audio/wav;base64,")
        assert "data-error" not in audio
        assert float(audio["data-duration"]) == pytest.approx(0.25, abs=1e-3)
    # the sort script ran and sorts numbers (not text) both ways
    assert result["ready"] == "ready" and dom.all("table", id="leaderboard")[0]["data-sortable"] == "ready"
    params = [float(v) for v in result["paramsAscending"]]
    assert params == sorted(params) and len(set(params)) > 1
    board = leaderboard(load_sweep(sweep.folder))
    by_objective = [row.group.label for row in sorted(board, key=lambda row: row.stats["objective"].mean)]
    assert result["objectiveAscending"] == by_objective
    assert result["objectiveDescending"] == by_objective[::-1] and result["ariaSort"] == "descending"
