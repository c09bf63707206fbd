"""Group-robust training losses over query clusters: COCO-DR's iDRO and greedy group DRO.

Both take the per-query losses of a batch (e.g. InfoNCE with reduction='none', shape [B], non-negative) and
each query's cluster id (LongTensor [B] in [0, K), see `dr_core.clustering`), keep per-cluster state across
steps, and return a scalar robust loss to backward instead of the mean loss. Each step first updates the
cluster weights h [K] with this batch, then weighs this batch's losses with the new weights (as in Sagawa et
al.'s group DRO, where q is updated before theta; the COCO-DR seed weighs with the previous step's h instead,
which gives a cluster absent from the previous batch only the floor weight eps).

Trainer step (sketch):

    dro = make_dro(cfg.type, num_clusters, **hparams)            # None for 'none'
    per_query = info_nce(q, p, G, temperature, reduction="none")  # [B]
    if dro is None:
        loss = per_query.mean()
    else:
        params = last_layer_params(model, 3) if cfg.type == "idro" else None
        loss, info = dro.robust_loss(per_query, cluster_ids(assign, batch_qids, device), params)
        log(dro_summary(info))
    loss.backward()
    checkpoint["dro"] = dro.state_dict()                          # resume: dro.load_state_dict(...)

Under torch.distributed every rank must call `robust_loss` at every step: per-cluster loss sums and counts
are all-reduced, so all ranks hold the same weights (a checkpoint from rank 0 resumes every rank). With
cross-device negatives, where every rank computes the loss of the whole gathered batch (only its own rows
carrying gradient, `dr_core.distributed.gather_with_grad`), pass the gathered cluster ids and
`global_batch=True`: the statistics are then already global and are not summed again, while iDRO's summed
per-rank gradients add up to the exact gradient of each cluster's global mean loss.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dr_core.settings import setting

Tensor = torch.Tensor


def cluster_losses(per_query_loss: Tensor, clusters: Tensor, num_clusters: int) -> tuple[Tensor, Tensor, Tensor]:
    """(L_g, ids, counts) for the clusters present in the batch, ids ascending.

    L_g [P] is the mean loss of cluster ids[g] (differentiable), counts [P] its number of queries.
    """
    _check_batch(per_query_loss, clusters, num_clusters)
    counts = torch.bincount(clusters, minlength=num_clusters)
    ids = counts.nonzero().squeeze(1)
    sums = per_query_loss.new_zeros(num_clusters).index_add(0, clusters, per_query_loss)
    return sums[ids] / counts[ids], ids, counts[ids]


def _check_batch(per_query_loss: Tensor, clusters: Tensor, num_clusters: int) -> None:
    if per_query_loss.dim() != 1 or clusters.shape != per_query_loss.shape:
        shapes = f"{tuple(per_query_loss.shape)}, {tuple(clusters.shape)}"
        raise ValueError(f"need losses [B] and clusters [B], got {shapes}")
    if clusters.dtype != torch.long:
        raise ValueError(f"clusters must be a LongTensor, got {clusters.dtype}")
    if clusters.numel() and (clusters.min() < 0 or clusters.max() >= num_clusters):
        raise ValueError(f"cluster ids must lie in [0, {num_clusters})")


def global_cluster_stats(
    per_query_loss: Tensor, clusters: Tensor, num_clusters: int, reduce: bool = True
) -> tuple[Tensor, Tensor]:
    """Detached float32 (loss sum [K], count [K]) over the batch, summed over all ranks if `reduce`."""
    sums = torch.zeros(num_clusters, device=per_query_loss.device)
    sums.index_add_(0, clusters, per_query_loss.detach().float())
    counts = torch.bincount(clusters, minlength=num_clusters).float()
    return (_all_reduce(sums), _all_reduce(counts)) if reduce else (sums, counts)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce(t: Tensor) -> Tensor:
    if _world_size() > 1:
        dist.all_reduce(t)
    return t


def idro_weights(
    h: Tensor, ids: Tensor, losses: Tensor, grads: Tensor, alpha: float, ema: float, rho: float, eps: float
) -> Tensor:
    """iDRO weight update (COCO-DR): new h [K] from the previous h [K] and the present clusters' statistics.

    ids [P]: present clusters; losses [P] >= 0: their mean losses; grads [P, D]: their loss gradients.
    R_ij = L_i^alpha L_j^alpha cos(grad_i, grad_j); score_j = rho * sum_i R_ij / K (the column mean over all K
    clusters with absent rows 0, as in the seed; so rho is calibrated for the seed's K); then
    h_j <- h_j^ema * exp(score_j - max score) for present j, 0 for absent j; normalise to sum 1; clamp below
    at eps (not renormalised after the clamp, as in the seed, so the sum can exceed 1).

    h^ema is a power, not an EMA blend: log h_new = ema * log h_old + score + const, i.e. exponentiated
    gradient ascent on the cluster weights from a prior tempered towards uniform (the geometric mixture
    h_old^ema * uniform^(1-ema)). ema = 0 forgets the past (h from this batch's scores only); ema = 1 keeps
    full multiplicative memory; the default 0.1 keeps a little. Ignoring the clamp and absences, after t steps
    log h = sum_k ema^k score_(t-k) + const.
    """
    if (losses < 0).any():
        raise ValueError("iDRO needs non-negative per-query losses (L^alpha)")
    unit = grads / (grads.norm(dim=1, keepdim=True) + 1e-12)
    la = losses.pow(alpha)
    r = la[:, None] * la[None, :] * (unit @ unit.T)  # [P, P]
    score = rho * r.sum(dim=0) / h.numel()
    new = torch.zeros_like(h)
    new[ids] = h[ids].pow(ema) * torch.exp(score - score.max())
    return (new / new.sum()).clamp(min=eps)


def greedy_weights(avg_loss: Tensor, freq: Tensor, alpha: float, eps: float) -> Tensor:
    """Greedy group-DRO weights [K] (CVaR at level alpha over clusters, Oren et al. 2019).

    Clusters sorted by avg_loss descending (ties: lower id first) are taken while their frequencies (freq,
    summing to 1) add up to less than alpha: each gets 1/alpha. The next (boundary) cluster b gets
    (alpha - F) / (alpha * freq_b), F the mass taken before it, so the covered mass is exactly alpha and
    sum_g freq_g h_g = 1 over the covered clusters. All others get eps; no weight is below eps.
    """
    order = torch.sort(avg_loss, descending=True, stable=True).indices
    f = freq[order]
    cut = min(int((torch.cumsum(f, 0) < alpha).sum()), len(f) - 1)
    h = torch.full_like(avg_loss, eps)
    h[order[:cut]] = 1.0 / alpha
    # f[cut] > 0 unless cut was capped at K-1 by rounding with alpha = 1; the floor avoids 0/0 there
    h[order[cut]] = (alpha - f[:cut].sum()) / (alpha * f[cut]).clamp(min=1e-12)
    return h.clamp(min=eps)


class _ClusterDRO:
    """Shared state handling: named float32 tensors of length K, moved to the loss's device on use."""

    _state_names: tuple[str, ...] = ()

    def __init__(self, num_clusters: int, alpha: float, ema: float, eps: float) -> None:
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
        if not 0 < alpha <= 1 or not 0 <= ema <= 1 or not eps > 0:
            raise ValueError(f"need 0 < alpha <= 1, 0 <= ema <= 1, eps > 0; got {alpha}, {ema}, {eps}")
        self.num_clusters, self.alpha, self.ema, self.eps = num_clusters, alpha, ema, eps

    def state_dict(self) -> dict[str, Tensor]:
        """Copies of the state tensors (CPU), for a checkpoint."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self._state_names}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from `state_dict()`; ValueError on missing keys or a different number of clusters."""
        if set(state) != set(self._state_names):
            raise ValueError(f"expected state keys {sorted(self._state_names)}, got {sorted(state)}")
        for name in self._state_names:
            if state[name].shape != (self.num_clusters,):
                shape = tuple(state[name].shape)
                raise ValueError(f"state '{name}' has shape {shape}, expected ({self.num_clusters},)")
            setattr(self, name, state[name].detach().float().clone())

    def _to(self, device: torch.device) -> None:
        for name in self._state_names:
            setattr(self, name, getattr(self, name).to(device))


class IDRO(_ClusterDRO):
    """COCO-DR implicit DRO: cluster weights from loss-scaled gradient similarities (see `idro_weights`).

    alpha is the exponent on the cluster losses in R (the seed reuses its DRO alpha there), ema the power on
    the previous weights, rho the score scale, eps the weight floor.
    """

    _state_names = ("h",)

    def __init__(
        self, num_clusters: int, alpha: float = 0.25, ema: float = 0.1, rho: float = 0.05, eps: float = 0.01
    ) -> None:
        super().__init__(num_clusters, alpha, ema, eps)
        self.rho = rho
        self.h = torch.ones(num_clusters)

    def robust_loss(
        self,
        per_query_loss: Tensor,
        clusters: Tensor,
        params: Sequence[Tensor] | None = None,
        update: bool = True,
        global_batch: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """sum_g h_g L_g over the clusters present on this rank, with h updated from this batch first.

        params: the parameters whose gradients define cluster similarity (COCO-DR: the last 2-3 transformer
        layers); needed when update=True. Costs one autograd.grad per present cluster (graph retained, so
        the returned loss can still be backwarded) and P x D floats (D = numel of params) per step; under
        torch.distributed the [P, D] gradients are summed over ranks. update=False (validation) weighs with
        the current h and changes nothing. global_batch: the batch is already the gathered global one.
        """
        local_l, local_ids, _ = cluster_losses(per_query_loss, clusters, self.num_clusters)
        sums, counts = global_cluster_stats(per_query_loss, clusters, self.num_clusters, not global_batch)
        self._to(per_query_loss.device)
        if update:
            ids = counts.nonzero().squeeze(1)
            grads = _cluster_gradients(local_l, local_ids, ids, params)
            self.h = idro_weights(self.h, ids, sums[ids] / counts[ids], grads, self.alpha, self.ema, self.rho, self.eps)
        loss = (self.h[local_ids].to(local_l.dtype) * local_l).sum()
        return loss, _info(self.h, sums, counts)


def _cluster_gradients(local_l: Tensor, local_ids: Tensor, ids: Tensor, params: Sequence[Tensor] | None) -> Tensor:
    """[P, D] flattened gradients of each globally present cluster's local mean loss, summed over ranks.

    Rows of clusters absent on this rank are 0 before the sum; every rank builds the same P rows.
    """
    params = list(params or [])
    if not params:
        raise ValueError("iDRO needs the parameters to take cluster gradients of (params=...)")
    out = torch.zeros(len(ids), sum(p.numel() for p in params), device=local_l.device)
    row = {g: i for i, g in enumerate(ids.tolist())}
    for g, loss_g in zip(local_ids.tolist(), local_l):
        grads = torch.autograd.grad(loss_g, params, retain_graph=True, allow_unused=True)
        flat = [(gr if gr is not None else torch.zeros_like(p)).reshape(-1) for gr, p in zip(grads, params)]
        out[row[g]] = torch.cat(flat)
    return _all_reduce(out)


# A transformer block: BERT-style `layer.<i>.`, T5's `block.<i>.` (whose own `layer.<j>.` are sub-layers: the first
# match in a name is the block), `layers.<i>.` (Llama-style).
_LAYER = re.compile(r"(?:^|\.)(?:layer|block|layers)\.(\d+)\.")


def last_layer_params(model: torch.nn.Module, num_layers: int = 3) -> list[torch.nn.Parameter]:
    """Trainable parameters of the last `num_layers` transformer blocks (`layer.<i>.`, T5's `block.<i>.`), the
    iDRO gradient features; COCO-DR uses 3 for base models, 2 for large. Both towers if untied, and both stacks of
    an encoder-decoder."""
    layer_of = {name: int(m.group(1)) for name, _ in model.named_parameters() if (m := _LAYER.search(name))}
    if not layer_of:
        raise ValueError("no parameters named like 'layer.<i>.' or 'block.<i>.' in the model")
    keep = sorted(set(layer_of.values()))[-num_layers:]
    return [p for name, p in model.named_parameters() if layer_of.get(name) in keep and p.requires_grad]


class GreedyDRO(_ClusterDRO):
    """Greedy group DRO (the seed's dro-greedy): EMA cluster losses and frequencies -> CVaR weights.

    Per step, for clusters present anywhere in the global batch: avg_loss_g <- (1-ema) avg_loss_g + ema L_g;
    for all clusters: count_g <- (1-ema) count_g + ema n_g (n_g = global batch count, 0 if absent; counts
    start at 1, avg losses at 0); freq = count / sum(count); h = greedy_weights(avg_loss, freq, alpha, eps).
    Loss = sum_g h_g (n_g / B) L_g = (1/B) sum_i h_(c_i) loss_i over this rank's B queries (L_g, n_g local):
    each cluster's mean loss weighted by its batch frequency, so h = 1 everywhere gives the plain mean loss.
    """

    _state_names = ("h", "avg_loss", "count")

    def __init__(self, num_clusters: int, alpha: float = 0.25, ema: float = 0.1, eps: float = 0.01) -> None:
        super().__init__(num_clusters, alpha, ema, eps)
        self.h = torch.ones(num_clusters)
        self.avg_loss = torch.zeros(num_clusters)
        self.count = torch.ones(num_clusters)

    def robust_loss(
        self,
        per_query_loss: Tensor,
        clusters: Tensor,
        params: Sequence[Tensor] | None = None,
        update: bool = True,
        global_batch: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(1/B) sum_i h_(c_i) loss_i with h updated from this batch first; params is unused (uniform API).

        update=False weighs with the current h and changes nothing; global_batch: as in `IDRO.robust_loss`.
        """
        _check_batch(per_query_loss, clusters, self.num_clusters)
        sums, counts = global_cluster_stats(per_query_loss, clusters, self.num_clusters, not global_batch)
        self._to(per_query_loss.device)
        if update:
            self._update(sums, counts)
        loss = (self.h[clusters].to(per_query_loss.dtype) * per_query_loss).sum() / per_query_loss.numel()
        info = _info(self.h, sums, counts)
        info["avg_loss"] = self.avg_loss.clone()
        return loss, info

    def _update(self, sums: Tensor, counts: Tensor) -> None:
        present = counts > 0
        batch_mean = sums[present] / counts[present]
        self.avg_loss[present] = (1 - self.ema) * self.avg_loss[present] + self.ema * batch_mean
        self.count = (1 - self.ema) * self.count + self.ema * counts
        self.h = greedy_weights(self.avg_loss, self.count / self.count.sum(), self.alpha, self.eps)


def _info(h: Tensor, sums: Tensor, counts: Tensor) -> dict[str, Tensor]:
    """Per-cluster tensors [K] for logging: weights, global batch mean loss (0 if absent), global counts."""
    mean = sums / counts.clamp(min=1)
    return {"weights": h.detach().clone(), "cluster_loss": mean, "cluster_count": counts}


def dro_summary(info: dict[str, Tensor]) -> dict[str, float]:
    """Scalars to log each step: clusters present, largest weight and effective number of clusters among
    the present ones (exp of the entropy of their normalised weights), and the worst present cluster loss."""
    present = info["cluster_count"] > 0
    w = info["weights"][present]
    p = w / w.sum()
    return {
        "dro/clusters_present": float(present.sum()),
        "dro/max_weight": float(w.max()),
        "dro/effective_clusters": math.exp(float(-(p * p.log()).sum())),
        "dro/worst_cluster_loss": float(info["cluster_loss"][present].max()),
    }


DRO_KINDS = ("idro", "greedy", "none")


@dataclass
class DroSettings:
    """The `dro` section of a recipe (documented in workflow/schemas/config.schema.yaml)."""

    type: str = setting("none", "idro: COCO-DR's implicit DRO; greedy: group DRO; none: off", DRO_KINDS)
    num_clusters: int = setting(50, "k-means clusters of the train queries")
    alpha: float = setting(0.25, "iDRO: exponent on the cluster losses; greedy: CVaR level (mass of worst clusters)")
    ema: float = setting(0.1, "iDRO: power on the previous weights; greedy: EMA rate of cluster losses and counts")
    rho: float = setting(0.05, "iDRO: scale of the gradient-similarity scores")
    eps: float = setting(0.01, "floor of a cluster's weight")
    grad_layers: int = setting(2, "iDRO: last transformer layers whose gradients are compared")

    def __post_init__(self) -> None:
        if self.type not in DRO_KINDS:
            raise ValueError(f"dro.type must be one of {DRO_KINDS}, not {self.type!r}")

    def hparams(self) -> dict[str, float]:
        """Keyword arguments of the chosen method's class."""
        common = {"alpha": self.alpha, "ema": self.ema, "eps": self.eps}
        return {**common, "rho": self.rho} if self.type == "idro" else common


def make_dro(kind: str, num_clusters: int, **hparams: float) -> IDRO | GreedyDRO | None:
    """The config switch `dro.type`: 'idro' -> IDRO, 'greedy' -> GreedyDRO (no rho), 'none' -> None.

    hparams are the class's keyword arguments (alpha, ema, eps; rho for idro only); TypeError on others.
    """
    if kind == "none":
        return None
    if kind == "idro":
        return IDRO(num_clusters, **hparams)
    if kind == "greedy":
        return GreedyDRO(num_clusters, **hparams)
    raise ValueError(f"unknown dro type '{kind}', expected one of {DRO_KINDS}")
