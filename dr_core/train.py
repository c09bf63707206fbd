"""Bi-encoder training: the task (groups of tokenized queries and passages, the objective, cross-device
negatives, the saved model) run by the generic loop of `dr_core.train_loop`, single- or multi-process
(torchrun), with checkpoints, exact resume, a held-out validation loss and CSV / TensorBoard logs."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from dr_core.batching import Padder
from dr_core.checkpoint import inputs_digest
from dr_core.device import autocast
from dr_core.distributed import World, gather_with_grad
from dr_core.dro import DroSettings
from dr_core.grad_cache import cached_loss
from dr_core.lora import LoraSettings, trainable_parameters
from dr_core.model import BiEncoder, load_tokenizer
from dr_core.model_card import write_card
from dr_core.negatives import positives_by_query
from dr_core.objective import Dro, Objective
from dr_core.settings import setting
from dr_core.tokenization import TokenStore
from dr_core.train_data import (
    Example,
    GroupDataset,
    GroupSampler,
    TrainingData,
    build_examples,
    keep_scored,
    split_validation,
)
from dr_core.train_loop import LoopSettings, Runtime, TrainLoop, start_runtime

log = logging.getLogger(__name__)


@dataclass
class TrainSettings(LoopSettings):
    """Hyperparameters of one training round (the `train` section of workflow/schemas/config.schema.yaml)."""

    group_size: int = setting(4, "passages per query: 1 positive + group_size-1 hard negatives")
    temperature: float = setting(1.0, "the scores are divided by it in InfoNCE")
    cross_device: bool = setting(True, "share negatives across processes")
    mask_false_negatives: bool = setting(True, "other queries' positives are not negatives")
    contrastive_weight: float = setting(1.0, "weight of InfoNCE (in-batch + hard negatives)")
    margin_mse_weight: float = setting(0.0, "weight of Margin-MSE distillation; > 0 needs teacher scores")
    kl_weight: float = setting(0.0, "weight of listwise KL distillation over each group; > 0 needs teacher scores")
    kl_temperature: float = setting(1.0, "student softmax temperature in the KL term")
    teacher_temperature: float = setting(1.0, "teacher softmax temperature in the KL term")
    sample_neg_from_topk: int = setting(0, "> 0: negatives only from the first k of each query's list")
    neg_skip_top: int = setting(0, "skip the first n of each query's negatives (likely false negatives)")
    lora: dict | None = setting(None, "LoRA adapters (JSON, dr_core.lora.LoraSettings' keys); null: full fine-tuning")
    grad_cache_chunk: int | None = setting(None, "cached loss (GradCache), this many query groups at a time; null: off")
    attention_dropout: float | None = setting(
        None, "dropout on the attention probabilities while training; null: the model's own (its config's)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora is not None:
            LoraSettings.from_config(self.lora)  # a clear error before any work
        if self.grad_cache_chunk is not None and self.grad_cache_chunk < 1:
            raise ValueError(f"train.grad_cache_chunk must be null or at least 1, not {self.grad_cache_chunk}")
        if self.attention_dropout is not None and not 0 <= self.attention_dropout < 1:
            raise ValueError(f"train.attention_dropout must be null or in [0, 1), not {self.attention_dropout}")
        weights = (self.contrastive_weight, self.margin_mse_weight, self.kl_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("train loss weights must be >= 0 with at least one > 0")

    @property
    def distills(self) -> bool:
        return self.margin_mse_weight > 0 or self.kl_weight > 0


def collate(padder_q: Padder, padder_p: Padder):
    """Items (query tokens, passage tokens, ids) -> ((queries, passages) padded, ids)."""

    def f(items):
        queries = padder_q([q for q, _, _ in items])
        passages = padder_p([p for _, ps, _ in items for p in ps])
        return (queries, passages), [i for _, _, i in items]

    return f


class BiEncoderTask:
    """The bi-encoder on the training loop: its groups, its loss (gathered across processes when
    `cross_device`) and its saved form."""

    def __init__(
        self,
        init_model: str | Path,
        data: TrainingData,
        settings: TrainSettings,
        runtime: Runtime,
        dro: DroSettings | None = None,
    ) -> None:
        qrels, teacher, clusters = data.qrels, data.teacher_scores, data.clusters
        self.settings, self.runtime = settings, runtime
        self.card: dict | None = None  # model card facts (dr_core.model_card), written on save when set
        self.tokenizer = load_tokenizer(init_model)
        self.model = BiEncoder.load(init_model).to(runtime.device)
        if settings.attention_dropout is not None:
            self.model.set_attention_dropout(settings.attention_dropout)
        if settings.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if settings.lora is not None:
            self.model.add_lora(LoraSettings.from_config(settings.lora))
            log.info("LoRA: %d trainable parameters", trainable_parameters(self.model))
        self.queries, self.corpus = TokenStore(data.queries), TokenStore(data.corpus)
        examples = self._examples(qrels, data.negatives, teacher)
        self.digest = _digest(init_model, examples, teacher, clusters)
        examples, val = split_validation(examples, settings.validation_size(len(examples)), settings.seed)
        self.dataset = self._dataset(examples)
        self.val_dataset = self._dataset(val) if val else None
        spec = self.model.spec
        self.collate = collate(Padder(self.tokenizer, spec.q_max_len), Padder(self.tokenizer, spec.p_max_len))
        use_dro = dro is not None and dro.type != "none"
        if use_dro and dro.type == "idro" and settings.grad_cache_chunk:
            raise ValueError(
                "train.grad_cache_chunk cannot be used with dro.type idro (it needs the parameters' "
                "gradients of each cluster's loss over the whole batch)"
            )
        self.objective = Objective(
            settings,
            positives_by_query(qrels),
            teacher,
            Dro(dro, clusters, [ex.qid for ex in examples], self.model) if use_dro else None,
        )
        self.gathers = settings.cross_device and runtime.world.size > 1
        self.loss_scale = runtime.world.size if self.gathers else 1

    def _examples(
        self, qrels: pd.DataFrame, negatives: dict[str, list[str]], teacher: dict[str, dict[str, float]] | None
    ) -> list[Example]:
        s = self.settings
        examples = build_examples(qrels, negatives, self.queries, self.corpus, s.neg_skip_top, s.sample_neg_from_topk)
        return keep_scored(examples, teacher, need_negatives=s.group_size > 1) if s.distills else examples

    def _dataset(self, examples: list[Example]) -> GroupDataset:
        sampler = GroupSampler(examples, len(self.corpus), self.settings.group_size, self.settings.seed)
        return GroupDataset(sampler, self.queries, self.corpus)

    def loss(self, net: torch.nn.Module, inputs: tuple[dict, dict], ids: list[list[str]], local: bool = False):
        """The weighted loss of a micro-batch; across processes (cross_device) unless `local`.

        Gathered across processes, every rank computes the loss of the whole global batch, of which only
        its own rows carry gradient: DDP's mean over ranks is undone by the factor world size. With
        `grad_cache_chunk`, the same loss and gradients with one chunk's activations at a time (dr_core.grad_cache).
        """
        chunk = self.settings.grad_cache_chunk
        if chunk and not local:
            return cached_loss(net, *inputs, chunk, self._embed, lambda q, p: self._objective(q, p, ids, local))
        return self._objective(*self._embed(net, *inputs), ids, local)

    def _embed(self, net: torch.nn.Module, queries: dict, passages: dict) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.runtime.precision, self.runtime.device):
            q, p = net(queries, passages)
        return q.float(), p.float()

    def _objective(self, q: torch.Tensor, p: torch.Tensor, ids: list[list[str]], local: bool) -> torch.Tensor:
        if local or not self.gathers:
            return self.objective(q, p, ids, update_dro=not local)
        world = self.runtime.world
        q, p = gather_with_grad(q, world), gather_with_grad(p, world)
        return self.objective(q, p, _gather_ids(ids, world), global_batch=True) * world.size

    def state_dict(self) -> dict | None:
        return self.objective.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        self.objective.load_state_dict(state)

    def log_columns(self) -> dict[str, float]:
        return self.objective.log_columns()

    def save(self, folder: Path) -> None:
        self.model.save(folder, self.tokenizer)
        if self.card is not None:
            write_card(folder, self.model.spec, self.card, asdict(self.settings))


class Trainer(TrainLoop):
    """Train a bi-encoder on (query, positive, negatives) groups; write a `save_pretrained` directory at the end."""

    def __init__(
        self,
        init_model: str | Path,
        data: TrainingData,
        settings: TrainSettings,
        checkpoint_dir: str | Path,
        dro: DroSettings | None = None,
        card: dict | None = None,
    ) -> None:
        if settings.distills and data.teacher_scores is None:
            raise ValueError("margin_mse_weight or kl_weight > 0 needs teacher scores (--teacher-scores)")
        runtime = start_runtime(settings)
        task = BiEncoderTask(init_model, data, settings, runtime, dro)
        task.card = card
        super().__init__(task, settings, runtime, checkpoint_dir, task.digest)


def _digest(
    init_model: str | Path,
    examples: list[Example],
    teacher: dict[str, dict[str, float]] | None,
    clusters: dict[str, int] | None,
) -> str:
    """What a checkpoint was trained from: the initial model, the training groups, the teacher scores of
    their queries and the query clusters (see `dr_core.checkpoint.inputs_digest`)."""
    used = {ex.qid for ex in examples}
    data = {
        "examples": [(ex.qid, ex.positives, ex.negatives) for ex in examples],
        "teacher": {q: teacher[q] for q in sorted(used & teacher.keys())} if teacher else None,
        "clusters": {q: clusters[q] for q in sorted(used & clusters.keys())} if clusters else None,
    }
    return inputs_digest(init_model, data)


def _gather_ids(ids: list[list[str]], world: World) -> list[list[str]]:
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, ids)
    return [row for part in parts for row in part]
