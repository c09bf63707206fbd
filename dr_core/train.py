"""The trainer: contrastive and/or distillation training of a bi-encoder, single- or multi-process (torchrun),
with checkpoints, resume, a held-out validation loss and CSV / TensorBoard logs."""

from __future__ import annotations

import csv
import hashlib
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
from dr_core.distributed import World, finish_world, gather_with_grad, init_world
from dr_core.dro import DroSettings, dro_summary, last_layer_params, make_dro
from dr_core.loss import group_scores, info_nce, listwise_kl, margin_mse
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.optim import OPTIMIZERS, make_optimizer
from dr_core.textio import hash_file
from dr_core.tokenization import TokenStore
from dr_core.train_data import (
    Example,
    GroupDataset,
    GroupSampler,
    build_examples,
    keep_scored,
    rank_batches,
    split_validation,
    steps_per_epoch,
)

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
    optimizer: str = "adamw"  # adamw | lamb
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    cross_device: bool = True
    mask_false_negatives: bool = True
    contrastive_weight: float = 1.0  # InfoNCE
    margin_mse_weight: float = 0.0  # distillation: needs teacher scores
    kl_weight: float = 0.0  # distillation: needs teacher scores
    kl_temperature: float = 1.0  # student softmax temperature in the KL term
    teacher_temperature: float = 1.0  # teacher softmax temperature in the KL term
    sample_neg_from_topk: int = 0  # > 0: negatives only from the first k of each query's list
    neg_skip_top: int = 0  # skip the first n of each query's negatives list
    val_fraction: float = 0.0  # train queries held out for a validation loss
    val_queries: int = 0  # > 0 overrides val_fraction
    eval_every: int = 0  # optimizer steps between validation losses (always at the end); 0: end only
    seed: int = 42
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (the last two on CUDA only)
    gradient_checkpointing: bool = False
    num_workers: int = 0
    checkpoint_every: int = 200  # optimizer steps; 0 disables
    log_every: int = 10
    tensorboard: bool = False  # also log to <out>_tensorboard/ beside the model folder

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"train.schedule must be 'linear' or 'constant', not {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train.batch_size and train.grad_accum must be at least 1")
        weights = (self.contrastive_weight, self.margin_mse_weight, self.kl_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("train loss weights must be >= 0 with at least one > 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("train.val_fraction must be in [0, 1)")

    @property
    def distills(self) -> bool:
        return self.margin_mse_weight > 0 or self.kl_weight > 0


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


def validation_size(settings: TrainSettings, num_examples: int) -> int:
    return settings.val_queries if settings.val_queries > 0 else round(settings.val_fraction * num_examples)


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
        teacher_scores: dict[str, dict[str, float]] | None = None,
        dro: DroSettings | None = None,
        clusters: dict[str, int] | None = None,
    ) -> None:
        if settings.distills and teacher_scores is None:
            raise ValueError("margin_mse_weight or kl_weight > 0 needs teacher scores (--teacher-scores)")
        self.settings = settings
        self.teacher = teacher_scores
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = pick_device()
        self.world = init_world(self.device)
        self.precision = resolve_precision(settings.precision, self.device)
        _seed_all(settings.seed)
        self.tokenizer = load_tokenizer(init_model)
        self.model = BiEncoder.load(init_model).to(self.device)
        if settings.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.queries, self.corpus = TokenStore(queries), TokenStore(corpus)
        examples = self._examples(qrels, negatives)
        self.inputs_digest = _inputs_digest(init_model, examples, teacher_scores, clusters)
        self.positives = qrels[qrels["rel"] > 0].groupby("qid")["docid"].agg(set).to_dict()  # false-negative mask
        examples, val = split_validation(examples, validation_size(settings, len(examples)), settings.seed)
        self.dataset = self._dataset(examples)
        self.val_dataset = self._dataset(val) if val else None
        self.collate = collate(
            Padder(self.tokenizer, self.model.spec.q_max_len), Padder(self.tokenizer, self.model.spec.p_max_len)
        )
        self.steps = total_steps(settings, len(examples), self.world.size)
        self.micro_per_epoch = steps_per_epoch(len(examples), settings.batch_size, self.world.size)
        self.optimizer = make_optimizer(settings.optimizer, self.model, settings.lr, settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(settings, self.steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world.size > 1
            else self.model
        )
        self.step = 0
        self.log_rows: list[dict] = []
        self.dro, self.clusters, self.dro_params, self.dro_info = None, clusters, None, None
        if dro is not None and dro.type != "none":
            self._init_dro(dro)

    def _init_dro(self, dro: DroSettings) -> None:
        """Cluster re-weighting of the contrastive loss (COCO-DR); every train query needs a cluster."""
        if not self.clusters:
            raise ValueError("dro.type is set but no query clusters were given (--clusters)")
        missing = [ex.qid for ex in self.dataset.sampler.examples if ex.qid not in self.clusters]
        if missing:
            raise ValueError(f"{len(missing)} train queries have no cluster, e.g. '{missing[0]}'")
        num_clusters = max(dro.num_clusters, max(self.clusters.values()) + 1)
        self.dro = make_dro(dro.type, num_clusters, **dro.hparams())
        if dro.type == "idro":
            self.dro_params = last_layer_params(self.model, dro.grad_layers)

    def _examples(self, qrels: pd.DataFrame, negatives: dict[str, list[str]]) -> list[Example]:
        s = self.settings
        examples = build_examples(qrels, negatives, self.queries, self.corpus, s.neg_skip_top, s.sample_neg_from_topk)
        if s.distills:
            examples = keep_scored(examples, self.teacher, need_negatives=s.group_size > 1)
        return examples

    def _dataset(self, examples: list[Example]) -> GroupDataset:
        sampler = GroupSampler(examples, len(self.corpus), self.settings.group_size, self.settings.seed)
        return GroupDataset(sampler, self.queries, self.corpus)

    # -- checkpoints -------------------------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        return {
            "settings": asdict(self.settings),
            "world": self.world.size,
            "steps": self.steps,
            "inputs": self.inputs_digest,
        }

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
            "dro": self.dro.state_dict() if self.dro is not None else None,
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
            log.warning("%s was written with other settings or inputs; starting afresh", path)
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        self.log_rows = state["log_rows"]
        if self.dro is not None:
            self.dro.load_state_dict(state["dro"])
        log.info("resumed from %s at step %d of %d", path, self.step, self.steps)
        return True

    # -- one optimizer step ------------------------------------------------------------------------------
    def _loss(self, queries: dict, passages: dict, ids: list[list[str]], local: bool = False) -> torch.Tensor:
        """The weighted loss of a micro-batch; across processes (cross_device) unless `local`.

        Gathered across processes, every rank computes the loss of the whole global batch, of which only
        its own rows carry gradient: DDP's mean over ranks is undone by the factor world size.
        """
        s = self.settings
        with autocast(self.precision, self.device):
            q, p = (self.model if local else self.ddp)(queries, passages)
        q, p = q.float(), p.float()
        if local or not (s.cross_device and self.world.size > 1):
            return self.objective(q, p, ids, update_dro=not local)
        q, p = gather_with_grad(q, self.world), gather_with_grad(p, self.world)
        return self.objective(q, p, _gather_ids(ids, self.world), global_batch=True) * self.world.size

    def objective(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        ids: list[list[str]],
        update_dro: bool = True,
        global_batch: bool = False,
    ) -> torch.Tensor:
        """Weighted sum of InfoNCE (cluster re-weighted under DRO), Margin-MSE and listwise KL for q [B, D],
        p [B*G, D], ids [B][1+G]. update_dro=False (validation) leaves the DRO weights as they are."""
        s = self.settings
        loss = torch.zeros((), device=q.device)
        if s.contrastive_weight > 0:
            mask = (
                false_negative_mask(ids, self.positives, s.group_size).to(q.device) if s.mask_false_negatives else None
            )
            if self.dro is None:
                contrastive = info_nce(q, p, s.group_size, s.temperature, mask)
            else:
                per_query = info_nce(q, p, s.group_size, s.temperature, mask, reduction="none")
                clusters = torch.tensor([self.clusters[row[0]] for row in ids], device=q.device)
                contrastive, info = self.dro.robust_loss(
                    per_query, clusters, self.dro_params, update=update_dro, global_batch=global_batch
                )
                if update_dro:
                    self.dro_info = info
            loss = loss + s.contrastive_weight * contrastive
        if s.distills:
            student = group_scores(q, p, s.group_size)  # [B, G]
            teacher = self.teacher_matrix(ids).to(q.device)
            if s.margin_mse_weight > 0:
                loss = loss + s.margin_mse_weight * margin_mse(student, teacher)
            if s.kl_weight > 0:
                loss = loss + s.kl_weight * listwise_kl(student, teacher, s.kl_temperature, s.teacher_temperature)
        return loss

    def teacher_matrix(self, ids: list[list[str]]) -> torch.Tensor:
        """[B, G] teacher scores of each group (every sampled passage has one: see `keep_scored`)."""
        return torch.tensor([[self.teacher[row[0]][pid] for pid in row[1:]] for row in ids], dtype=torch.float32)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the held-out queries (fixed groups and batches, eval mode, this process alone)."""
        self.model.eval()
        loader = torch.utils.data.DataLoader(
            self.val_dataset,
            batch_size=self.settings.batch_size,
            collate_fn=self.collate,
            num_workers=0,
            generator=_loader_generator(self.settings.seed, -1),
        )
        total, n = 0.0, 0
        for queries, passages, ids in loader:
            queries = {k: v.to(self.device) for k, v in queries.items()}
            passages = {k: v.to(self.device) for k, v in passages.items()}
            total += float(self._loss(queries, passages, ids, local=True)) * len(ids)
            n += len(ids)
        self.model.train()
        return total / n

    def train(self, out_dir: str | Path, log_path: str | Path) -> None:
        """Run (or resume) to `self.steps` optimizer steps, then save the model to `out_dir` (rank 0)."""
        s = self.settings
        self.maybe_resume()
        self.model.train()
        board = _tensorboard(out_dir, self.step) if s.tensorboard and self.world.is_main else None
        bar = tqdm(total=self.steps, initial=self.step, desc="train", unit="step", disable=not self.world.is_main)
        t0, seen = time.time(), 0
        while self.step < self.steps:
            micro = self.step * s.grad_accum
            epoch, offset = divmod(micro, self.micro_per_epoch)
            self.dataset.set_epoch(epoch)
            batches = rank_batches(len(self.dataset), s.batch_size, self.world.rank, self.world.size, offset)
            loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_sampler=batches,
                collate_fn=self.collate,
                num_workers=s.num_workers,
                generator=_loader_generator(s.seed, epoch),
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
                grad_norm = self._optimizer_step()
                bar.update(1)
                row = self._log_row(loss, grad_norm, seen, t0)
                if row is not None:
                    self.log_rows.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    _board_write(board, row)
                if s.checkpoint_every and self.step % s.checkpoint_every == 0 and self.step < self.steps:
                    self.save_checkpoint()
                if self.step >= self.steps:
                    break
            if pending:  # an epoch ended inside an accumulation window: drop the partial gradient
                self.optimizer.zero_grad(set_to_none=True)
        bar.close()
        if board is not None:
            board.close()
        if self.world.is_main:
            self._finish(out_dir, log_path)
        finish_world(self.world)

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return grad_norm

    def _log_row(self, loss: torch.Tensor, grad_norm: torch.Tensor, seen: int, t0: float) -> dict | None:
        """The CSV row of this step when it is a logging or validation step (the last step is both)."""
        s = self.settings
        last = self.step == self.steps
        evaluate = self.val_dataset is not None and (last or (s.eval_every and self.step % s.eval_every == 0))
        if not (evaluate or last or self.step % s.log_every == 0):
            return None
        scale = self.world.size if (s.cross_device and self.world.size > 1) else 1
        elapsed = time.time() - t0
        return {
            "step": self.step,
            "epoch": round(self.step * s.grad_accum / self.micro_per_epoch, 4),
            "loss": float(loss.detach()) * s.grad_accum / scale,
            "val_loss": self.validation_loss() if evaluate and self.world.is_main else None,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "groups_per_s": seen * self.world.size / max(elapsed, 1e-9),
            "elapsed_s": round(elapsed, 3),
            **self._dro_columns(),
        }

    def _dro_columns(self) -> dict[str, float]:
        """Per-cluster weights and losses of the last step, and summaries, for the log (DRO only)."""
        if self.dro_info is None:
            return {}
        info = self.dro_info
        columns = dict(dro_summary(info))
        for g, (weight, loss) in enumerate(zip(info["weights"].tolist(), info["cluster_loss"].tolist())):
            columns[f"cluster_weight_{g}"] = weight
            columns[f"cluster_loss_{g}"] = loss
        return columns

    def _finish(self, out_dir: str | Path, log_path: str | Path) -> None:
        with atomic_path(out_dir, is_dir=True) as tmp:
            self.model.save(tmp, self.tokenizer)
            meta = {
                "dr_core_version": __version__,
                "train": asdict(self.settings),
                "steps": self.steps,
                "world_size": self.world.size,
            }
            (tmp / "dr_training.json").write_text(json.dumps(meta, indent=2) + "\n")
        _write_csv(log_path, self.log_rows)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)


def _inputs_digest(
    init_model: str | Path,
    examples: list[Example],
    teacher: dict[str, dict[str, float]] | None,
    clusters: dict[str, int] | None,
) -> str:
    """sha256 of what a checkpoint was trained from: the initial model's files, the training groups, the
    teacher scores of their queries and the query clusters. A checkpoint left by a run whose inputs have
    changed since (new negatives, a retrained previous round) is not resumed."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(init_model).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(init_model)).encode() + b"\0")
        hash_file(path, h)
    used = {ex.qid for ex in examples}
    data = {
        "examples": [(ex.qid, ex.positives, ex.negatives) for ex in examples],
        "teacher": {q: teacher[q] for q in sorted(used & teacher.keys())} if teacher else None,
        "clusters": {q: clusters[q] for q in sorted(used & clusters.keys())} if clusters else None,
    }
    h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()


def _loader_generator(seed: int, epoch: int) -> torch.Generator:
    """A DataLoader's own generator: without one, every new iterator draws its base seed from the global
    torch RNG, so a run resumed mid-epoch (one extra iterator) would see other dropout masks afterwards."""
    return torch.Generator().manual_seed(hash((seed, epoch)) % 2**63)


def _gather_ids(ids: list[list[str]], world: World) -> list[list[str]]:
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, ids)
    return [row for part in parts for row in part]


def _tensorboard(out_dir: str | Path, step: int):
    """A SummaryWriter in `<out_dir>_tensorboard` beside the model folder; a resumed run drops later events."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out_dir)
    return SummaryWriter(log_dir=str(out.with_name(out.name + "_tensorboard")), purge_step=step or None)


def _board_write(board, row: dict) -> None:
    if board is None:
        return
    for key, value in row.items():
        if key != "step" and value is not None:
            board.add_scalar(f"train/{key}", value, row["step"])
    board.flush()


def _write_csv(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
