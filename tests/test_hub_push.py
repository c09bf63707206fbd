"""dr_core.hub.push_model against a stand-in for huggingface_hub.HfApi (no network, no token needed): what one
commit uploads (every file of the model folder, the card as README.md in place of the folder's own), where the
token comes from, and what is recorded; errors before anything is uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest

from dr_core.errors import MissingPathError
from dr_core.hub import push_model
from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

COMMIT_URL = "https://huggingface.co/someone/tiny-dr/commit/0123abcd"


class StandInHfApi:
    """Records what push_model asks of the Hub; reads each upload's content at commit time, as the Hub client does."""

    calls: list[tuple] = []

    def __init__(self, token: str | None = None, **kwargs) -> None:
        self.calls.append(("init", token))

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False, **kwargs):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def create_commit(self, repo_id: str, operations, commit_message: str = "", **kwargs):
        uploaded = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        assert len(uploaded) == len(operations), "a path uploaded twice in one commit"
        self.calls.append(("create_commit", repo_id, uploaded, commit_message))
        return huggingface_hub.CommitInfo(
            commit_url=COMMIT_URL, commit_message=commit_message, commit_description="", oid="0123abcd"
        )


@pytest.fixture()
def hub(monkeypatch):
    """push_model imports HfApi from huggingface_hub when called: the stand-in takes its place there."""
    StandInHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", StandInHfApi)
    monkeypatch.setenv("DR_TEST_HUB_TOKEN", "hf_test_token")
    return StandInHfApi.calls


@pytest.fixture()
def model_folder(tiny_bert, tmp_path) -> Path:
    """A saved bi-encoder with a stale README.md of its own (the base model's card, say) and a nested file."""
    folder = tmp_path / "round1" / "model"
    BiEncoder.from_base(str(tiny_bert), EncoderSpec(pooling="mean")).save(folder, load_tokenizer(tiny_bert))
    (folder / "README.md").write_text("# an old card that must not be uploaded\n")
    (folder / "extra").mkdir(exist_ok=True)
    (folder / "extra" / "notes.txt").write_text("nested files go up with their path\n")
    return folder


def test_push_uploads_every_model_file_with_the_card_as_readme(hub, model_folder, tmp_path):
    card = tmp_path / "model_card.md"
    card.write_text("---\nlibrary_name: sentence-transformers\n---\n# tiny-dr\nnDCG@10 0.5\n")
    out = tmp_path / "hub_push.json"
    url = push_model(model_folder, card, "someone/tiny-dr", out, private=True, token_env="DR_TEST_HUB_TOKEN")

    assert url == COMMIT_URL
    assert [c[0] for c in hub] == ["init", "create_repo", "create_commit"]
    assert hub[0] == ("init", "hf_test_token")  # the token is the named variable's
    assert hub[1] == ("create_repo", "someone/tiny-dr", True, True)  # private, and no error when it exists
    _, repo_id, uploaded, message = hub[2]
    assert repo_id == "someone/tiny-dr" and str(model_folder) in message

    files = {p.relative_to(model_folder).as_posix(): p.read_bytes() for p in model_folder.rglob("*") if p.is_file()}
    assert {"dr_encoder.json", "model.safetensors", "tokenizer.json", "extra/notes.txt"} <= set(files)
    assert set(uploaded) == set(files)  # every file of the folder, nothing else (README.md is in both)
    assert uploaded["README.md"] == card.read_bytes()  # the card replaces the folder's own README.md
    del uploaded["README.md"], files["README.md"]
    assert uploaded == files  # every other file with its content, at its path in the folder
    record = json.loads(out.read_text())
    assert record == {"repo_id": "someone/tiny-dr", "commit_url": COMMIT_URL, "files": len(files) + 1}


def test_a_folder_without_a_readme_gets_the_card_added(hub, model_folder, tmp_path):
    (model_folder / "README.md").unlink()
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    push_model(model_folder, card, "someone/tiny-dr", tmp_path / "out.json", token_env="DR_TEST_HUB_TOKEN")
    uploaded = hub[-1][2]
    assert uploaded["README.md"] == b"# card\n" and "dr_encoder.json" in uploaded
    assert hub[1] == ("create_repo", "someone/tiny-dr", False, True)  # public unless asked


def test_nothing_is_uploaded_without_a_token_a_model_or_a_card(hub, model_folder, tmp_path, monkeypatch):
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    out = tmp_path / "out.json"
    monkeypatch.delenv("DR_TEST_HUB_TOKEN")
    with pytest.raises(ValueError, match="environment variable DR_TEST_HUB_TOKEN .* holds no Hugging Face token"):
        push_model(model_folder, card, "someone/tiny-dr", out, token_env="DR_TEST_HUB_TOKEN")
    monkeypatch.setenv("DR_TEST_HUB_TOKEN", "hf_test_token")
    with pytest.raises(MissingPathError, match="no such model folder; model folders in .*: round1/model"):
        push_model(tmp_path / "round2" / "model", card, "someone/tiny-dr", out, token_env="DR_TEST_HUB_TOKEN")
    with pytest.raises(MissingPathError, match="--card .*missing.md: no such file"):
        push_model(model_folder, tmp_path / "missing.md", "someone/tiny-dr", out, token_env="DR_TEST_HUB_TOKEN")
    assert hub == [] and not out.exists()
