"""The trainer: contrastive training of a bi-encoder, single- or multi-process, with checkpoints and resume."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dr_core import __version__
from dr_core.atomic import atomic_path
from dr_core.batching import Padder
from dr_core.device import autocast, pick_device, resolve_precision
from dr_core.distributed import World, gather_with_grad, init_world
from dr_core.loss import info_nce
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.tokenization import TokenStore
from dr_core.train_data import GroupDataset, GroupSampler, build_examples, rank_batches, steps_per_epoch

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


@dataclass
class TrainSettings:
    """Hyperparameters of one training run (documented in workflow/schemas/config.schema.yaml)."""

    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 16  # queries per micro-batch, over all processes
    group_size: int = 4  # passages per query: 1 positive + group_size-1 negatives
    grad_accum: int = 1
    lr: float = 2.0e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    warmup_steps: int = 0  # > 0 overrides warmup_ratio
    schedule: str = "linear"  # linear | constant
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    cross_device: bool = True
    mask_false_negatives: bool = True
    seed: int = 42
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (the last two on CUDA only)
    num_workers: int = 0
    checkpoint_every: int = 200  # optimizer steps; 0 disables
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"train.schedule must be 'linear' or 'constant', not {self.schedule!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train.batch_size and train.grad_accum must be at least 1")


def total_steps(settings: TrainSettings, num_examples: int, world: int) -> int:
    """Optimizer steps of the whole run."""
    if settings.max_steps > 0:
        return settings.max_steps
    per_epoch = steps_per_epoch(num_examples, settings.batch_size, world) // settings.grad_accum
    return max(1, math.ceil(per_epoch * settings.epochs))


def lr_lambda(settings: TrainSettings, steps: int):
    warmup = settings.warmup_steps or int(settings.warmup_ratio * steps)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "constant":
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return f


def collate(padder_q: Padder, padder_p: Padder):
    def f(items):
        queries = padder_q([q for q, _, _ in items])
        passages = padder_p([p for _, ps, _ in items for p in ps])
        ids = [i for _, _, i in items]
        return queries, passages, ids

    return f


def false_negative_mask(ids: list[list[str]], positives: dict[str, set[str]], group_size: int) -> torch.Tensor:
    """[B, B*G] True where passage j is relevant to query i but is not query i's own positive slot."""
    qids = [row[0] for row in ids]
    pids = [p for row in ids for p in row[1:]]
    mask = torch.tensor([[p in positives.get(q, ()) for p in pids] for q in qids], dtype=torch.bool)
    mask[torch.arange(len(qids)), torch.arange(len(qids)) * group_size] = False
    return mask


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Train `model` on (query, positive, negatives) groups; write a `save_pretrained` directory at the end."""

    def __init__(
        self,
        init_model: str | Path,
        queries: str | Path,
        corpus: str | Path,
        qrels: pd.DataFrame,
        negatives: dict[str, list[str]],
        settings: TrainSettings,
        checkpoint_dir: str | Path,
    ) -> None:
        self.settings = settings
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = pick_device()
        self.world = init_world(self.device)
        self.precision = resolve_precision(settings.precision, self.device)
        _seed_all(settings.seed)
        self.tokenizer = load_tokenizer(init_model)
        self.model = BiEncoder.load(init_model).to(self.device)
        self.queries, self.corpus = TokenStore(queries), TokenStore(corpus)
        examples = build_examples(qrels, negatives, self.queries, self.corpus)
        self.positives = {ex.qid: set(ex.positives) for ex in examples}
        sampler = GroupSampler(examples, len(self.corpus), settings.group_size, settings.seed)
        self.dataset = GroupDataset(sampler, self.queries, self.corpus)
        self.collate = collate(Padder(self.tokenizer, self.model.spec.q_max_len), Padder(self.tokenizer, self.model.spec.p_max_len))
        self.steps = total_steps(settings, len(examples), self.world.size)
        self.micro_per_epoch = steps_per_epoch(len(examples), settings.batch_size, self.world.size)
        decay = [p for n, p in self.model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=settings.lr,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(settings, self.steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world.size > 1
            else self.model
        )
        self.step = 0
        self.log_rows: list[dict] = []

    # -- checkpoints -------------------------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        return {"settings": asdict(self.settings), "world": self.world.size, "steps": self.steps}

    def save_checkpoint(self) -> None:
        if not self.world.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "step": self.step,
            "log_rows": self.log_rows,
            "fingerprint": self._fingerprint(),
        }
        with atomic_path(self.checkpoint_dir / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def maybe_resume(self) -> bool:
        path = self.checkpoint_dir / STATE_FILE
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != self._fingerprint():
            log.warning("%s was written with other settings; starting afresh", path)
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        self.log_rows = state["log_rows"]
        log.info("resumed from %s at step %d of %d", path, self.step, self.steps)
        return True

    # -- one optimizer step ------------------------------------------------------------------------------
    def _loss(self, queries: dict, passages: dict, ids: list[list[str]]) -> torch.Tensor:
        s = self.settings
        with autocast(self.precision, self.device):
            q, p = self.ddp(queries, passages)
        q, p = q.float(), p.float()
        if s.cross_device and self.world.size > 1:
            q, p = gather_with_grad(q, self.world), gather_with_grad(p, self.world)
            ids = _gather_ids(ids, self.world)
        mask = false_negative_mask(ids, self.positives, s.group_size).to(q.device) if s.mask_false_negatives else None
        loss = info_nce(q, p, s.group_size, s.temperature, mask)
        return loss * self.world.size if (s.cross_device and self.world.size > 1) else loss

    def train(self, out_dir: str | Path, log_path: str | Path) -> None:
        """Run (or resume) to `self.steps` optimizer steps, then save the model to `out_dir`."""
        s = self.settings
        self.maybe_resume()
        self.model.train()
        bar = tqdm(total=self.steps, initial=self.step, desc="train", unit="step", disable=not self.world.is_main)
        t0, seen = time.time(), 0
        while self.step < self.steps:
            micro = self.step * s.grad_accum
            epoch, offset = divmod(micro, self.micro_per_epoch)
            self.dataset.set_epoch(epoch)
            batches = rank_batches(len(self.dataset), s.batch_size, self.world.rank, self.world.size, offset)
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=batches, collate_fn=self.collate, num_workers=s.num_workers
            )
            pending = 0
            for queries, passages, ids in loader:
                queries = {k: v.to(self.device) for k, v in queries.items()}
                passages = {k: v.to(self.device) for k, v in passages.items()}
                loss = self._loss(queries, passages, ids) / s.grad_accum
                self.scaler.scale(loss).backward()
                pending += 1
                seen += len(ids)
                if pending < s.grad_accum:
                    continue
                pending = 0
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                bar.update(1)
                if self.step % s.log_every == 0 or self.step == self.steps:
                    row = {
                        "step": self.step,
                        "epoch": round(self.step * s.grad_accum / self.micro_per_epoch, 4),
                        "loss": float(loss.detach()) * s.grad_accum / (self.world.size if s.cross_device else 1),
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "groups_per_s": seen / max(time.time() - t0, 1e-9),
                    }
                    self.log_rows.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                if s.checkpoint_every and self.step % s.checkpoint_every == 0 and self.step < self.steps:
                    self.save_checkpoint()
                if self.step >= self.steps:
                    break
            if pending:  # an epoch ended inside an accumulation window: drop the partial gradient
                self.optimizer.zero_grad(set_to_none=True)
        bar.close()
        if self.world.is_main:
            self._finish(out_dir, log_path)

    def _finish(self, out_dir: str | Path, log_path: str | Path) -> None:
        with atomic_path(out_dir, is_dir=True) as tmp:
            self.model.save(tmp, self.tokenizer)
            meta = {"dr_core_version": __version__, "train": asdict(self.settings), "steps": self.steps, "world_size": self.world.size}
            (tmp / "dr_training.json").write_text(json.dumps(meta, indent=2) + "\n")
        _write_csv(log_path, self.log_rows)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)


def _gather_ids(ids: list[list[str]], world: World) -> list[list[str]]:
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, ids)
    return [row for part in parts for row in part]


def _write_csv(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
