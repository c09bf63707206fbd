"""Upload a saved model folder to the Hugging Face Hub in one commit, its card with metrics as README.md."""

from __future__ import annotations

import os
from pathlib import Path

from dr_core.atomic import write_json
from dr_core.errors import MissingPathError
from dr_core.model_card import CARD_FILE
from dr_core.textio import subfolders

MODEL_MARKERS = ("dr_encoder.json", "config.json")  # a bi-encoder's, a transformers model's (the reranker)


def push_model(
    model_dir: str | Path,
    card: str | Path,
    repo_id: str,
    out: str | Path,
    private: bool = False,
    token_env: str = "HF_TOKEN",
) -> str:
    """Create `repo_id` if needed and commit every file of `model_dir`, with `card` as its README.md; record the
    commit in `out`. The token is read from the environment variable `token_env`; none set is an error."""
    from huggingface_hub import CommitOperationAdd, HfApi

    token = os.environ.get(token_env, "")
    if not token:
        raise ValueError(f"hub: the environment variable {token_env} (hub.token_env) holds no Hugging Face token")
    folder = Path(model_dir)
    check_model_folder(folder)
    if not Path(card).is_file():
        raise MissingPathError(f"--card {card}: no such file (`python -m dr_core model-card` writes it)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != CARD_FILE)
    ops = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in files]
    ops.append(CommitOperationAdd(CARD_FILE, str(card)))
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.create_commit(repo_id, ops, commit_message=f"dr_core: upload {folder}")
    write_json({"repo_id": repo_id, "commit_url": commit.commit_url, "files": len(ops)}, out)
    return commit.commit_url


def check_model_folder(folder: Path) -> None:
    """A MissingPathError, listing the model folders near it, unless `folder` holds a saved model."""
    if folder.is_dir() and any((folder / m).is_file() for m in MODEL_MARKERS):
        return
    if folder.is_dir():
        raise MissingPathError(f"--model {folder}: not a model folder (no {' or '.join(MODEL_MARKERS)})")
    near = folder.parent
    while not near.is_dir() and near != near.parent:
        near = near.parent
    models = model_folders(near) if near != near.parent else []  # the file system's root is not searched
    found = ", ".join(str(p.relative_to(near)) for p in models) or "none"
    raise MissingPathError(f"--model {folder}: no such model folder; model folders in {near}: {found}")


def model_folders(root: Path, depth: int = 3, limit: int = 20) -> list[Path]:
    """The folders at most `depth` levels under `root` that hold a saved model, the first `limit` in name order
    (a run folder's `round<N>/model` are two levels down)."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        level = [c for p in level for c in subfolders(p)]
        found += [p for p in level if any((p / m).is_file() for m in MODEL_MARKERS)]
    return sorted(found)[:limit]
