"""The report: plot functions on small inputs; `snakemake --report` on the fixture run, opened in Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import snakemake_in
from PIL import Image
from test_workflow import FIXTURE_CONFIG, planned_jobs, snakemake, write_config

from dr_core import plots
from dr_core.errors import DataError


def find_chromium() -> Path | None:
    """Chromium on PATH (Debian's `chromium`, Ubuntu's `chromium-browser`), else /usr/bin/chromium, else None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    default = Path("/usr/bin/chromium")
    return default if default.exists() else None


CHROMIUM = find_chromium()
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,1000",
    "--virtual-time-budget=10000",
]
REPORT_FILES = {"summary.html", "metrics.png", "training_loss.png", "runtimes.png"}


def assert_not_blank(png: bytes | Path, min_colours: int = 50, min_ink: float = 0.01) -> Image.Image:
    """A real picture: many distinct colours and a share of non-white pixels."""
    image = Image.open(io.BytesIO(png) if isinstance(png, bytes) else png).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    ink = float((pixels.min(axis=1) < 200).mean())
    assert colours >= min_colours and ink >= min_ink, f"blank-looking image: {colours} colours, {ink:.3%} ink"
    return image


def write_summary(path: Path) -> Path:
    rows = [("bm25", 0.68, 0.9), ("round0", 0.56, 0.8), ("round1", 0.50, 0.85), ("round2", 0.64, 0.95)]
    table = pd.DataFrame(
        [
            {"system": s, "dataset": "tiny", "split": "test", "ndcg@10": n, "recall@100": r, "recall@1000": 1.0}
            for s, n, r in rows
        ]
    )
    table.to_csv(path, sep="\t", index=False)
    return path


def write_train_log(folder: Path, clusters: int = 0) -> Path:
    rng = np.random.default_rng(len(str(folder)))
    steps = np.arange(1, 9)
    log = pd.DataFrame({"step": steps, "epoch": steps / 4, "loss": 3 / steps + rng.random(8), "lr": 1e-4})
    for g in range(clusters):
        log[f"cluster_weight_{g}"] = rng.dirichlet(np.ones(clusters), size=8)[:, g]
    folder.mkdir(parents=True)
    log.to_csv(folder / "train_log.csv", index=False)
    return folder / "train_log.csv"


def test_metric_and_training_plots_are_drawn(tmp_path):
    summary = write_summary(tmp_path / "summary.tsv")
    logs = [write_train_log(tmp_path / f"round{r}") for r in (1, 2)]
    plots.plot_metrics(summary, tmp_path / "metrics.png")
    plots.plot_training(logs, tmp_path / "loss.svg")
    assert_not_blank(tmp_path / "metrics.png")
    svg = (tmp_path / "loss.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    texts = re.findall(r"<!-- (.*?) -->", svg)  # matplotlib names each text it draws in a comment
    assert {"step", "loss", "Training loss", "round1 train", "round2 train"} <= set(texts)
    vertices = [len(re.findall(r"[ML]", d)) for d in re.findall(r'<path d="([^"]*)"', svg)]
    assert vertices.count(8) == 2  # one curve of 8 logged steps per round
    assert plots.recall_columns(pd.read_csv(summary, sep="\t")) == ["recall@100", "recall@1000"]


def test_dro_plot_reads_cluster_weights_or_dro_summaries_and_refuses_logs_without_either(tmp_path):
    logs = [write_train_log(tmp_path / f"round{r}", clusters=3) for r in (1, 2)]
    assert plots.dro_panels(logs[0])["cluster weights"].columns.tolist() == ["0", "1", "2"]
    plots.main(["dro", "--logs", *map(str, logs), "--out", str(tmp_path / "dro.png")])
    assert_not_blank(tmp_path / "dro.png")
    plain = write_train_log(tmp_path / "plain" / "round1")
    summaries = pd.read_csv(plain).assign(**{"dro/max_weight": 0.5, "dro/effective_clusters": 3.0})
    summaries.to_csv(tmp_path / "summaries.csv", index=False)
    assert set(plots.dro_panels(tmp_path / "summaries.csv")) == {"max weight", "effective clusters"}
    with pytest.raises(DataError, match="neither cluster_weight_<g> nor dro/<stat> columns"):
        plots.plot_dro_weights([plain], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_runtimes_and_table(tmp_path):
    bench = tmp_path / "benchmarks"
    for rule, job, seconds in (("train", "round1", 9.6), ("encode", "round0.tiny.shard0", 2.5)):
        (bench / rule).mkdir(parents=True, exist_ok=True)
        (bench / rule / f"{job}.tsv").write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:09\t609.9\n")
    table = plots.read_benchmarks(sorted(bench.glob("*/*.tsv")))
    assert table.set_index("job")["s"].to_dict() == {"round0.tiny.shard0": 2.5, "round1": 9.6}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dr_core.plots",
            "runtimes",
            "--benchmarks",
            *map(str, bench.glob("*/*.tsv")),
            "--out",
            str(tmp_path / "runtimes.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert_not_blank(tmp_path / "runtimes.png")
    plots.summary_html(write_summary(tmp_path / "summary.tsv"), tmp_path / "summary.html")
    html = (tmp_path / "summary.html").read_text()
    assert "<td><b>0.6800</b></td>" in html and "<td>0.5600</td>" in html  # BM25 best on nDCG@10


def test_the_summary_page_shows_the_beir_table_after_the_summary(tmp_path):
    from dr_core.evaluate import beir_table

    summary = write_summary(tmp_path / "summary.tsv")
    beir = tmp_path / "summary.beir.tsv"
    beir_table(pd.read_csv(summary, sep="\t")).to_csv(beir, sep="\t", index=False)
    args = ["table", "--summary", str(summary), "--beir", str(beir), "--out", str(tmp_path / "summary.html")]
    assert plots.main(args) == 0
    html = (tmp_path / "summary.html").read_text()
    summary_part, heading, beir_part = html.partition("<h3>BEIR style")
    assert heading and "<th>tiny</th>" in beir_part and "<th>avg</th>" in beir_part
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", beir_part)
    assert rows[0] == ("bm25", "<b>0.6800</b>", "<b>0.6800</b>") and rows[1] == ("round0", "0.5600", "0.5600")
    plots.main(args[:3] + args[5:])  # without --beir: the summary alone
    assert "BEIR" not in (tmp_path / "summary.html").read_text()


def test_dro_plot_is_a_target_only_when_the_recipe_uses_dro(tmp_path):
    jobs = planned_jobs(snakemake("-n", "--configfile", str(FIXTURE_CONFIG), "--directory", str(tmp_path)).stdout)
    assert {"report_table", "report_metrics", "report_training", "report_runtimes"} <= set(jobs)
    assert "report_dro" not in jobs
    config = write_config(tmp_path, **{"dro.type": "idro"})
    jobs = planned_jobs(snakemake("-n", "--configfile", str(config), "--directory", str(tmp_path)).stdout)
    assert jobs.get("report_dro") == 1


def report_results(report: Path) -> dict[str, dict]:
    """The `results` object embedded in a Snakemake 9 HTML report: path -> entry with name and data_uri."""
    match = re.search(r"var results = (\{.*?\});\n", report.read_text())
    assert match, "no results in the report"
    return json.loads(match.group(1))


def data_uri_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split("base64,", 1)[1])


def chromium(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    """Load a local page in headless Chromium (a fresh profile, no network) and screenshot or dump it."""
    cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *mode, page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def open_result(report: Path, name: str, out: Path) -> Path:
    """A copy of the report that opens one result the way its eye button does, and records the shown image."""
    script = f"""<script>
window.addEventListener("load", () => setTimeout(() => {{
  const [path, entry] = Object.entries(results).find(([p, r]) => r.name === {json.dumps(name)});
  const kind = entry.mime_type.startsWith("image/") ? "img" : "html";
  app.setView({{content: kind, contentPath: entry.data_uri, resultPath: path}});
  setTimeout(() => {{
    const shown = (tag) => [...document.querySelectorAll("#app " + tag)].find((n) => n.src === entry.data_uri);
    const img = shown("img"), frame = shown("iframe");
    document.body.dataset.shown = img ? `img ${{img.complete}} ${{img.naturalWidth}}x${{img.naturalHeight}}`
      : frame ? `iframe ${{frame.src.slice(0, 30)}}` : "nothing";
  }}, 1000);
}}, 500));
</script></body>"""
    head, _, tail = report.read_text().rpartition("</body>")  # the last one: the bundled JS contains others
    out.write_text(head + script + tail)
    return out


@pytest.fixture(scope="session")
def chromium_found() -> Path:
    """Chromium, or a skip; a failure with DR_SLURM_TEST=1 (the full run, CI's, asked for every test: a skip would
    hide this one). Session-scoped and named before `fixture_run`, so it is decided before that workflow runs."""
    if CHROMIUM is None:
        absent = "no chromium or chromium-browser on PATH nor /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("DR_SLURM_TEST") == "1":
            pytest.fail(f"DR_SLURM_TEST=1 but {absent}")
        pytest.skip(absent)
    return CHROMIUM


@pytest.mark.slow
def test_report_is_self_contained_and_its_plots_render_in_chromium(chromium_found, fixture_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake_in(fixture_run, "--report", str(report))
    results = report_results(report)
    by_name = {entry["name"]: (Path(path), entry) for path, entry in results.items()}
    assert set(by_name) == REPORT_FILES
    for name, (path, entry) in by_name.items():
        assert data_uri_bytes(entry["data_uri"]) == (fixture_run / path).read_bytes(), name  # embedded, not linked
        assert entry["caption"].strip(), f"{name} has no caption"
        if name.endswith(".png"):
            assert_not_blank(data_uri_bytes(entry["data_uri"]))
    assert not re.search(r"""(src|href)=["'](?!data:|#|javascript:|https?://)""", report.read_text())

    shots = tmp_path / "shots"
    shots.mkdir()
    chromium(report, tmp_path, f"--screenshot={shots / 'report.png'}")
    assert_not_blank(shots / "report.png")  # the workflow page: description and the DAG
    for name in sorted(REPORT_FILES):
        page = open_result(report, name, tmp_path / f"open_{name}.html")
        dom = chromium(page, tmp_path, "--dump-dom").stdout
        shown = re.search(r'data-shown="([^"]*)"', dom)
        assert shown, f"{name}: the report did not open the result"
        if name.endswith(".png"):
            width, height = Image.open(fixture_run / by_name[name][0]).size
            assert shown.group(1) == f"img true {width}x{height}", name  # decoded at full size
        else:
            assert shown.group(1).startswith("iframe data:text/html"), name
        chromium(page, tmp_path, f"--screenshot={shots / (name + '.png')}")
        assert_not_blank(shots / f"{name}.png")
