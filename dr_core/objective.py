"""The bi-encoder's training objective: weighted InfoNCE (cluster re-weighted under DRO), Margin-MSE and
listwise KL distillation, on the embeddings of a batch of groups (one query, a positive, negatives)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from dr_core.dro import DroSettings, dro_summary, last_layer_params, make_dro
from dr_core.loss import group_scores, info_nce, listwise_kl, margin_mse


class LossSettings(Protocol):
    """The settings the objective reads (`dr_core.train.TrainSettings` has them; the objective does not import it)."""

    group_size: int
    temperature: float
    mask_false_negatives: bool
    contrastive_weight: float
    margin_mse_weight: float
    kl_weight: float
    kl_temperature: float
    teacher_temperature: float

    @property
    def distills(self) -> bool: ...


def false_negative_mask(ids: list[list[str]], positives: dict[str, set[str]], group_size: int) -> torch.Tensor:
    """[B, B*G] True where passage j is relevant to query i but is not query i's own positive slot."""
    qids = [row[0] for row in ids]
    pids = [p for row in ids for p in row[1:]]
    mask = torch.tensor([[p in positives.get(q, ()) for p in pids] for q in qids], dtype=torch.bool)
    mask[torch.arange(len(qids)), torch.arange(len(qids)) * group_size] = False
    return mask


class Dro:
    """COCO-DR's cluster re-weighting of the contrastive loss: the method, its clusters and its parameters."""

    def __init__(
        self, settings: DroSettings, clusters: dict[str, int], train_qids: Iterable[str], model: torch.nn.Module
    ) -> None:
        if not clusters:
            raise ValueError("dro.type is set but no query clusters were given (--clusters)")
        missing = [q for q in train_qids if q not in clusters]
        if missing:
            raise ValueError(f"{len(missing)} train queries have no cluster, e.g. '{missing[0]}'")
        self.clusters = clusters
        self.method = make_dro(
            settings.type, max(settings.num_clusters, max(clusters.values()) + 1), **settings.hparams()
        )
        self.params = last_layer_params(model, settings.grad_layers) if settings.type == "idro" else None
        self.info: dict | None = None  # weights and cluster losses of the last training step

    def __call__(self, per_query: torch.Tensor, ids: list[list[str]], update: bool, global_batch: bool):
        clusters = torch.tensor([self.clusters[row[0]] for row in ids], device=per_query.device)
        loss, info = self.method.robust_loss(per_query, clusters, self.params, update=update, global_batch=global_batch)
        if update:
            self.info = info
        return loss

    def log_columns(self) -> dict[str, float]:
        """Per-cluster weights and losses of the last step, and summaries, for the log."""
        if self.info is None:
            return {}
        columns = dict(dro_summary(self.info))
        for g, (weight, loss) in enumerate(zip(self.info["weights"].tolist(), self.info["cluster_loss"].tolist())):
            columns[f"cluster_weight_{g}"] = weight
            columns[f"cluster_loss_{g}"] = loss
        return columns


class Objective:
    """The weighted loss of query embeddings q [B, D] and passage embeddings p [B*G, D] of groups `ids`
    ([B][1+G]: qid, then the group's passage ids, positive first)."""

    def __init__(
        self,
        settings: LossSettings,
        positives: dict[str, set[str]],
        teacher: dict[str, dict[str, float]] | None = None,
        dro: Dro | None = None,
    ) -> None:
        self.settings = settings
        self.positives = positives  # for the false-negative mask
        self.teacher = teacher
        self.dro = dro

    def __call__(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        ids: list[list[str]],
        update_dro: bool = True,
        global_batch: bool = False,
    ) -> torch.Tensor:
        """update_dro=False (validation) leaves the DRO weights as they are; global_batch: q and p hold every
        process's rows (cross-device)."""
        s = self.settings
        loss = torch.zeros((), device=q.device)
        if s.contrastive_weight > 0:
            loss = loss + s.contrastive_weight * self.contrastive(q, p, ids, update_dro, global_batch)
        if s.distills:
            student = group_scores(q, p, s.group_size)  # [B, G]
            teacher = self.teacher_matrix(ids).to(q.device)
            if s.margin_mse_weight > 0:
                loss = loss + s.margin_mse_weight * margin_mse(student, teacher)
            if s.kl_weight > 0:
                loss = loss + s.kl_weight * listwise_kl(student, teacher, s.kl_temperature, s.teacher_temperature)
        return loss

    def contrastive(
        self, q: torch.Tensor, p: torch.Tensor, ids: list[list[str]], update_dro: bool, global_batch: bool
    ) -> torch.Tensor:
        """InfoNCE over in-batch and hard negatives (other queries' positives masked), DRO re-weighted."""
        s = self.settings
        mask = false_negative_mask(ids, self.positives, s.group_size).to(q.device) if s.mask_false_negatives else None
        if self.dro is None:
            return info_nce(q, p, s.group_size, s.temperature, mask)
        per_query = info_nce(q, p, s.group_size, s.temperature, mask, reduction="none")
        return self.dro(per_query, ids, update_dro, global_batch)

    def teacher_matrix(self, ids: list[list[str]]) -> torch.Tensor:
        """[B, G] teacher scores of each group (every sampled passage has one: see `keep_scored`)."""
        return torch.tensor([[self.teacher[row[0]][pid] for pid in row[1:]] for row in ids], dtype=torch.float32)

    def log_columns(self) -> dict[str, float]:
        return self.dro.log_columns() if self.dro is not None else {}

    def state_dict(self) -> dict | None:
        return self.dro.method.state_dict() if self.dro is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.dro is not None:
            self.dro.method.load_state_dict(state)
