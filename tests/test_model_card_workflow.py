"""Model cards with metrics (rule model_card, after evaluation) and the opt-in Hub upload rule (never run here)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import REPO, copy_run, snakemake_cmd, snakemake_in
from test_workflow import FIXTURE_CONFIG, planned_jobs, snakemake, write_config

from dr_core.card_metrics import write_metrics_card
from dr_core.model import EncoderSpec
from dr_core.model_card import write_card


def test_metrics_replace_the_cards_placeholder_and_the_folder_is_left_alone(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    write_card(model, EncoderSpec(), {"recipe": "tiny", "base": "x/y", "dataset": "scifact", "round": 1})
    before = (model / "README.md").read_text()
    metric_files = []
    for ds, ndcg in (("scifact", 0.61234), ("nfcorpus", 0.3)):
        path = tmp_path / f"{ds}.json"
        m = {"system": "round1", "dataset": ds, "split": "test", "metrics": {"ndcg@10": ndcg, "recall@100": 0.9}}
        path.write_text(json.dumps(m))
        metric_files.append(path)
    out = write_metrics_card(model, metric_files, "snakemake --cores all x/round1/model_card.md", tmp_path / "card.md")
    card = out.read_text()
    assert "| dataset | split | ndcg@10 | recall@100 |" in card
    assert "| scifact | test | 0.6123 | 0.9000 |" in card and "| nfcorpus | test | 0.3000 | 0.9000 |" in card
    assert "Not evaluated" not in card and card.count("## Metrics") == 1
    assert card.endswith("## Reproduce\n\n```bash\nsnakemake --cores all x/round1/model_card.md\n```\n")
    assert card.startswith(before.partition("## Metrics")[0])  # front matter, training, inputs, use kept
    assert (model / "README.md").read_text() == before
    (model / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="no model card"):
        write_metrics_card(model, metric_files, "x", tmp_path / "none.md")
    assert not (tmp_path / "none.md").exists()


@pytest.mark.slow
def test_each_rounds_card_has_its_metrics_and_command_on_the_fixture_run(fixture_run, tmp_path):
    work = copy_run(fixture_run, tmp_path)  # the 2-round fixture run, reused
    out = work / "results" / "tiny"
    for r in range(3):
        card = (out / f"round{r}" / "model_card.md").read_text()
        metrics = json.loads((out / f"round{r}" / "tiny" / "metrics.test.json").read_text())["metrics"]
        row = "| tiny | test | " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |"
        assert row in card and (f"ANCE round {r}" in card) == (r > 0)
        config = FIXTURE_CONFIG.relative_to(REPO)  # repository-relative: a moved repository keeps the card
        command = f"snakemake --cores all results/tiny/round{r}/model_card.md --configfile {config}"
        assert command in card
        assert "Not evaluated" in (out / f"round{r}" / "model" / "README.md").read_text()
    # Nothing to redo in the copy; a new metric reruns the cards with evaluation.
    assert "Nothing to be done" in snakemake_in(work, "-n").stdout
    changed = write_config(tmp_path, **{"eval.metrics": ["ndcg@10", "recall@10"]})
    jobs = planned_jobs(snakemake_in(work, "-n", config=changed).stdout)
    assert jobs["model_card"] == 3 and jobs["evaluate"] == 4


def dry_run(config, workdir, token: str | None, *args: str) -> str:
    """A dry run's output, with the Hub token variable HF_TOKEN unset or set to `token`."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | ({"HF_TOKEN": token} if token else {})
    cmd = snakemake_cmd("-n", *args, "--configfile", str(config), "--directory", str(workdir))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_push_to_hub_is_absent_by_default_and_planned_when_configured(tmp_path):
    plan = dry_run(FIXTURE_CONFIG, tmp_path, "x")
    assert "push_to_hub" not in planned_jobs(plan) and planned_jobs(plan)["model_card"] == 3
    listed = snakemake("--list-rules", "--configfile", str(FIXTURE_CONFIG), "--directory", str(tmp_path)).stdout
    assert "model_card" in listed and "push_to_hub" not in listed

    config = str(write_config(tmp_path, hub={"repo_id": "someone/tiny-dr", "round": 1, "private": True}))
    assert "push_to_hub" not in planned_jobs(dry_run(config, tmp_path, None))  # no token: not a default target
    plan = dry_run(config, tmp_path, "x", "-p")
    assert planned_jobs(plan)["push_to_hub"] == 1
    assert (
        "push-to-hub --model results/tiny/round1/model --card results/tiny/round1/model_card.md "
        "--repo-id someone/tiny-dr --private --token-env HF_TOKEN --out results/tiny/round1/hub_push.json"
    ) in plan
    bad = str(write_config(tmp_path, hub={"repo_id": "someone/tiny-dr", "round": 5}))
    proc = snakemake("-n", "--configfile", bad, "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0 and "hub.round 5" in proc.stdout + proc.stderr


def test_push_without_a_token_is_refused_before_any_upload(tmp_path, monkeypatch):
    from dr_core.hub import push_model

    monkeypatch.delenv("MY_HUB_TOKEN", raising=False)
    with pytest.raises(ValueError, match="MY_HUB_TOKEN \\(hub.token_env\\) holds no Hugging Face token"):
        push_model(tmp_path, tmp_path / "card.md", "someone/x", tmp_path / "push.json", token_env="MY_HUB_TOKEN")
    assert not (tmp_path / "push.json").exists()
