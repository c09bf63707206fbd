"""The generic training loop: optimizer, schedule, mixed precision, gradient accumulation, epochs that resume
mid-way, validation, logs (CSV, tqdm, TensorBoard), checkpoints, and the saved model at the end.

What is trained is a `Task`: it owns the model, its group datasets, its loss and its saved form. The
bi-encoder (`dr_core.train`) and the cross-encoder reranker (`dr_core.reranker`) are two tasks on this loop.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dr_core import __version__
from dr_core.atomic import atomic_path
from dr_core.checkpoint import Checkpointer, describe, rng_state, seed_all, set_rng_state
from dr_core.compiled import compile_in_place
from dr_core.device import PRECISIONS, pick_device, resolve_precision
from dr_core.distributed import World, finish_world, init_world
from dr_core.optim import OPTIMIZERS, make_optimizer
from dr_core.settings import setting
from dr_core.train_data import GroupDataset, rank_batches, steps_per_epoch

log = logging.getLogger(__name__)

SCHEDULES = ("linear", "constant")


@dataclass
class LoopSettings:
    """Settings of the loop shared by every task (each task's settings extend these)."""

    config_key: ClassVar[str] = "train"  # the config section, for error messages

    epochs: float = setting(1.0, "passes over the train queries")
    max_steps: int = setting(0, "optimizer steps; > 0 overrides epochs")
    batch_size: int = setting(16, "queries per micro-batch, over all processes")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    lr: float = setting(2.0e-5, "peak learning rate")
    weight_decay: float = setting(0.01, "decoupled weight decay (biases and norms excluded)")
    warmup_ratio: float = setting(0.1, "share of the steps with a linear warmup")
    warmup_steps: int = setting(0, "warmup steps; > 0 overrides warmup_ratio")
    schedule: str = setting("linear", "learning rate after warmup: linear decay to 0, or constant", SCHEDULES)
    optimizer: str = setting("adamw", "adamw, or lamb (per-tensor trust ratio, for large batches)", OPTIMIZERS)
    max_grad_norm: float = setting(1.0, "gradient norm clip")
    val_fraction: float = setting(0.0, "share of the train queries held out (by seed) for a validation loss")
    val_queries: int = setting(0, "held-out queries; > 0 overrides val_fraction")
    eval_every: int = setting(0, "optimizer steps between validation losses (always at the end); 0: end only")
    seed: int = setting(42, "seed of sampling, shuffling and initialisation")
    precision: str = setting("auto", "auto: fp32 on CPU, bf16/fp16 on CUDA (fp16 and bf16 on CUDA only)", PRECISIONS)
    gradient_checkpointing: bool = setting(False, "recompute activations in backward (memory saver)")
    compile: bool = setting(False, "torch.compile the model (the same dropout masks and losses as uncompiled)")
    num_workers: int = setting(0, "DataLoader worker processes")
    checkpoint_every: int = setting(200, "optimizer steps between checkpoints; 0 disables")
    log_every: int = setting(10, "optimizer steps between log rows")
    tensorboard: bool = setting(False, "also log to <out>_tensorboard/ beside the model folder")

    def __post_init__(self) -> None:
        key = self.config_key
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{key}.schedule must be 'linear' or 'constant', not {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{key}.optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError(f"{key}.batch_size and {key}.grad_accum must be at least 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"{key}.val_fraction must be in [0, 1)")

    def validation_size(self, num_examples: int) -> int:
        return self.val_queries if self.val_queries > 0 else round(self.val_fraction * num_examples)


@dataclass(frozen=True)
class Runtime:
    """Where a run computes: its device, its process group and its precision."""

    device: torch.device
    world: World
    precision: str


def start_runtime(settings: LoopSettings) -> Runtime:
    """Pick the device, join the process group (torchrun) and seed every random stream."""
    device = pick_device()
    world = init_world(device)
    runtime = Runtime(device, world, resolve_precision(settings.precision, device))
    seed_all(settings.seed)
    return runtime


class Task(Protocol):
    """What the loop trains. A batch from `collate` is (model inputs, ids), ids one row per group."""

    model: torch.nn.Module
    dataset: GroupDataset
    val_dataset: torch.utils.data.Dataset | None
    loss_scale: int  # the factor by which `loss` exceeds the batch's mean loss (cross-device gathering)

    def collate(self, items: list) -> tuple[Any, list[list[str]]]: ...

    def loss(self, net: torch.nn.Module, inputs: Any, ids: list[list[str]], local: bool = False) -> torch.Tensor:
        """The loss of a micro-batch through `net` (the model or its DDP wrapper); `local`: validation."""
        ...

    def state_dict(self) -> dict | None: ...

    def load_state_dict(self, state: dict | None) -> None: ...

    def log_columns(self) -> dict[str, float]: ...

    def save(self, folder: Path) -> None: ...


def total_steps(settings: LoopSettings, num_examples: int, world: int) -> int:
    """Optimizer steps of the whole run."""
    if settings.max_steps > 0:
        return settings.max_steps
    per_epoch = steps_per_epoch(num_examples, settings.batch_size, world) // settings.grad_accum
    return max(1, math.ceil(per_epoch * settings.epochs))


def lr_lambda(settings: LoopSettings, steps: int):
    """Learning-rate factor per step: linear warm-up, then linear decay to 0 or constant."""
    warmup = settings.warmup_steps or int(settings.warmup_ratio * steps)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "constant":
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return f


class TrainLoop:
    """Train `task` for `settings` to a `save`d model folder, resuming from `checkpoint_dir` when it holds
    a checkpoint of this very run (same settings, world size and `inputs_digest`)."""

    def __init__(
        self, task: Task, settings: LoopSettings, runtime: Runtime, checkpoint_dir: str | Path, inputs_digest: str
    ) -> None:
        self.task, self.settings, self.runtime = task, settings, runtime
        self.world = runtime.world
        num_examples = len(task.dataset)
        self.micro_per_epoch = steps_per_epoch(num_examples, settings.batch_size, self.world.size)
        self.steps = total_steps(settings, num_examples, self.world.size)
        self.optimizer = make_optimizer(settings.optimizer, task.model, settings.lr, settings.weight_decay)
        if settings.compile:
            compile_in_place(task.model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(settings, self.steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.precision == "fp16")
        device = runtime.device
        self.net = (
            DistributedDataParallel(task.model, device_ids=[device.index] if device.type == "cuda" else None)
            if self.world.size > 1
            else task.model
        )
        fingerprint = {"settings": asdict(settings), "world": self.world.size, "steps": self.steps}
        self.checkpoints = Checkpointer(checkpoint_dir, {**fingerprint, "inputs": inputs_digest}, self.world.is_main)
        self.step = 0
        self.log_rows: list[dict] = []
        # the loss of each optimizer step since the last log row, summed (a device tensor: no sync a step), and
        # the number of those steps: a log row's `loss` is their mean, as the HF Trainer logs it
        self._loss_sum: torch.Tensor | float = 0.0
        self._loss_steps = 0
        self._t0, self._seen = time.time(), 0

    # -- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.world.is_main:
            return
        self.checkpoints.save(
            {
                "model": self.task.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "log_rows": self.log_rows,
                "log_interval": (float(self._loss_sum), self._loss_steps),
                "task": self.task.state_dict(),
            }
        )

    CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "step", "log_rows", "task")

    def maybe_resume(self) -> bool:
        """Resume this run's checkpoint, if there is one. One that does not load or does not fit (other
        settings or inputs, missing keys, other shapes) is moved aside and the run starts from step 0, exactly as
        a run without it."""
        fresh = self._fresh_state()
        state = self.checkpoints.load(self.runtime.device, self.CHECKPOINT_KEYS)
        if state is None:
            return False
        try:
            step, log_rows = int(state["step"]), list(state["log_rows"])
            loss_sum, loss_steps = state.get("log_interval", (0.0, 0))  # absent: a checkpoint from before it
            _check_model_state(self.task.model, state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.task.load_state_dict(state["task"])
            self.task.model.load_state_dict(state["model"])  # last: the others restore cheaply, the model not
        except (MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as e:
            self._restore(fresh)
            self.checkpoints.set_aside(f"its state does not fit this run ({describe(e)})")
            return False
        self.step, self.log_rows = step, log_rows
        self._loss_sum, self._loss_steps = float(loss_sum), int(loss_steps)
        log.info("resumed from %s at step %d of %d", self.checkpoints.path, self.step, self.steps)
        return True

    def _fresh_state(self) -> dict:
        """What `maybe_resume` changes besides the model, as it is before resuming (small: no optimizer
        moments yet)."""
        return {
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "scaler": copy.deepcopy(self.scaler.state_dict()),
            "task": copy.deepcopy(self.task.state_dict()),
            "rng": rng_state(),
            "step": self.step,
            "log_rows": list(self.log_rows),
            "log_interval": (self._loss_sum, self._loss_steps),
        }

    def _restore(self, fresh: dict) -> None:
        self.optimizer.load_state_dict(fresh["optimizer"])
        self.scheduler.load_state_dict(fresh["scheduler"])
        self.scaler.load_state_dict(fresh["scaler"])
        self.task.load_state_dict(fresh["task"])
        set_rng_state(fresh["rng"])
        self.step, self.log_rows = fresh["step"], fresh["log_rows"]
        self._loss_sum, self._loss_steps = fresh["log_interval"]

    # -- evaluation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset: torch.utils.data.Dataset | None = None) -> float:
        """Mean loss over `dataset` (default: the held-out validation groups) in fixed batches, in eval mode,
        in this process alone; nothing is updated (DRO weights included)."""
        dataset = self.task.val_dataset if dataset is None else dataset
        if dataset is None:
            raise ValueError("no validation set: set val_fraction or val_queries, or pass a dataset")
        self.task.model.eval()
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.settings.batch_size,
            collate_fn=self.task.collate,
            num_workers=0,
            generator=loader_generator(self.settings.seed, -1),
        )
        total, n = 0.0, 0
        for inputs, ids in loader:
            total += float(self.task.loss(self.task.model, self._to_device(inputs), ids, local=True)) * len(ids)
            n += len(ids)
        self.task.model.train()
        return total / n

    # -- the loop ----------------------------------------------------------------------------------------
    def train(self, out_dir: str | Path, log_path: str | Path) -> None:
        """Run (or resume) to `self.steps` optimizer steps, then save the model to `out_dir` (rank 0)."""
        s = self.settings
        self.maybe_resume()
        self.task.model.train()
        board = _tensorboard(out_dir, self.step) if s.tensorboard and self.world.is_main else None
        bar = tqdm(total=self.steps, initial=self.step, desc="train", unit="step", disable=not self.world.is_main)
        self._t0, self._seen = time.time(), 0
        while self.step < self.steps:
            self._run_epoch(bar, board)
        bar.close()
        if board is not None:
            board.close()
        if self.world.is_main:
            self._finish(out_dir, log_path)
        finish_world(self.world)

    def _run_epoch(self, bar: tqdm, board) -> None:
        """From the current step to the end of its epoch (or of the run)."""
        s = self.settings
        epoch, offset = divmod(self.step * s.grad_accum, self.micro_per_epoch)
        pending, step_loss = 0, 0.0  # step_loss: the mean micro-batch loss of the step being accumulated
        for inputs, ids in self._loader(epoch, offset):
            loss = self.task.loss(self.net, self._to_device(inputs), ids) / s.grad_accum
            self.scaler.scale(loss).backward()
            step_loss = step_loss + loss.detach()
            pending += 1
            self._seen += len(ids)
            if pending < s.grad_accum:
                continue
            pending = 0
            grad_norm = self._optimizer_step()
            self._loss_sum, self._loss_steps, step_loss = self._loss_sum + step_loss, self._loss_steps + 1, 0.0
            bar.update(1)
            row = self._log_row(grad_norm)
            if row is not None:
                self.log_rows.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                _board_write(board, row)
            if s.checkpoint_every and self.step % s.checkpoint_every == 0 and self.step < self.steps:
                self.save_checkpoint()
            if self.step >= self.steps:
                return
        if pending:  # an epoch ended inside an accumulation window: drop the partial gradient (and its loss)
            self.optimizer.zero_grad(set_to_none=True)

    def _loader(self, epoch: int, offset: int) -> torch.utils.data.DataLoader:
        """This rank's micro-batches of `epoch`, from micro-step `offset` on."""
        s = self.settings
        self.task.dataset.set_epoch(epoch)
        batches = rank_batches(len(self.task.dataset), s.batch_size, self.world.rank, self.world.size, offset)
        return torch.utils.data.DataLoader(
            self.task.dataset,
            batch_sampler=batches,
            collate_fn=self.task.collate,
            num_workers=s.num_workers,
            generator=loader_generator(s.seed, epoch),
        )

    def _to_device(self, inputs: Any) -> Any:
        """Tensors in (nested dicts, lists and tuples of) `inputs` moved to the run's device."""
        if isinstance(inputs, torch.Tensor):
            return inputs.to(self.runtime.device)
        if isinstance(inputs, dict):
            return {k: self._to_device(v) for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(self._to_device(v) for v in inputs)
        return inputs

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), self.settings.max_grad_norm)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale is None or self.scaler.get_scale() >= scale:  # fp16 overflow: the scaler skipped this step
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return grad_norm

    def _log_row(self, grad_norm: torch.Tensor) -> dict | None:
        """The CSV row of this step when it is a logging or validation step (the last step is both). Its `loss` is
        the mean training loss of the optimizer steps since the previous row (each step's the mean over its
        micro-batches), as the HF Trainer logs it, not the loss of this one step; `grad_norm`, `lr` and the task's
        columns (DRO's weights and cluster losses) are this step's."""
        s = self.settings
        last = self.step == self.steps
        evaluate = self.task.val_dataset is not None and (last or (s.eval_every and self.step % s.eval_every == 0))
        if not (evaluate or last or self.step % s.log_every == 0):
            return None
        elapsed = time.time() - self._t0
        row = {
            "step": self.step,
            "epoch": round(self.step * s.grad_accum / self.micro_per_epoch, 4),
            "loss": float(self._loss_sum) / self._loss_steps / self.task.loss_scale,
            "val_loss": self.evaluate() if evaluate and self.world.is_main else None,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "groups_per_s": self._seen * self.world.size / max(elapsed, 1e-9),
            "elapsed_s": round(elapsed, 3),
            **self.task.log_columns(),
        }
        self._loss_sum, self._loss_steps = 0.0, 0
        return row

    def _finish(self, out_dir: str | Path, log_path: str | Path) -> None:
        """The model folder (with `dr_training.json`) and the CSV log, atomically; then drop the checkpoints."""
        with atomic_path(out_dir, is_dir=True) as tmp:
            self.task.save(tmp)
            meta = {
                "dr_core_version": __version__,
                "train": asdict(self.settings),
                "steps": self.steps,
                "world_size": self.world.size,
            }
            (tmp / "dr_training.json").write_text(json.dumps(meta, indent=2) + "\n")
        _write_csv(log_path, self.log_rows)
        self.checkpoints.clear()


def _check_model_state(model: torch.nn.Module, saved: dict) -> None:
    """A ValueError unless `saved` holds exactly `model`'s tensors with their shapes (checked before loading,
    since a failed `load_state_dict` leaves the tensors it got to changed)."""
    own = model.state_dict()
    if not isinstance(saved, dict):
        raise ValueError(f"the model state is a {type(saved).__name__}")
    missing, unexpected = sorted(own.keys() - saved.keys()), sorted(saved.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(f"model keys differ (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, tensor in own.items():
        value = saved[key]
        if isinstance(tensor, torch.Tensor) and (not isinstance(value, torch.Tensor) or value.shape != tensor.shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"model tensor {key} is {shape}, not {tuple(tensor.shape)}")


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """A DataLoader's own generator: without one, every new iterator draws its base seed from the global
    torch RNG, so a run resumed mid-epoch (one extra iterator) would see other dropout masks afterwards."""
    return torch.Generator().manual_seed(hash((seed, epoch)) % 2**63)


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
