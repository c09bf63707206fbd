"""Upload a saved model folder to the Hugging Face Hub in one commit, its card with metrics as README.md."""

from __future__ import annotations

import os
from pathlib import Path

from dr_core.atomic import write_json
from dr_core.model_card import CARD_FILE


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
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != CARD_FILE)
    ops = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in files]
    ops.append(CommitOperationAdd(CARD_FILE, str(card)))
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.create_commit(repo_id, ops, commit_message=f"dr_core: upload {folder}")
    write_json({"repo_id": repo_id, "commit_url": commit.commit_url, "files": len(ops)}, out)
    return commit.commit_url
