"""iDRO and greedy group DRO against small hand-computed examples.

The iDRO examples use a linear "model": query i's loss is x_i . w, so the gradient of a cluster's mean loss
with respect to w is the mean of its x_i, which can be worked out by hand.
"""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dr_core.dro import IDRO, GreedyDRO, cluster_losses, dro_summary, greedy_weights, last_layer_params, make_dro


def _linear_batch(xs, w):
    w = torch.nn.Parameter(torch.tensor(w))
    return torch.tensor(xs) @ w, w


def test_cluster_losses_present_only():
    loss = torch.tensor([1.0, 3.0, 5.0, 2.0])
    l_g, ids, counts = cluster_losses(loss, torch.tensor([2, 0, 2, 0]), 4)
    assert ids.tolist() == [0, 2]
    assert counts.tolist() == [2, 2]
    assert l_g.tolist() == [2.5, 3.0]  # cluster 0: (3+2)/2; cluster 2: (1+5)/2


def test_cluster_losses_rejects_bad_ids():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cluster_losses(torch.ones(2), torch.tensor([0, 2]), 2)


def test_idro_first_step_by_hand():
    # w = [1, 1]. Cluster 0: x = [4, 0] -> L0 = 4, grad [4, 0]. Cluster 2: x = [0, 2] and [0, 0] -> L2 = 1,
    # grad [0, 1]. Cluster 1 absent. alpha = 0.5: L^alpha = 2 and 1; the gradients are orthogonal, so
    # R = [[4, 0], [0, 1]]; column means over K = 3 clusters: 4/3, 1/3; rho = 0.3: scores 0.4, 0.1.
    # h starts at 1 (1^ema = 1): unnormalised [1, 0, exp(-0.3)] -> / (1 + exp(-0.3)) -> [0.574443, 0, 0.425557];
    # the absent cluster is then clamped up to eps = 0.01.
    per_query, w = _linear_batch([[4.0, 0.0], [0.0, 2.0], [0.0, 0.0]], [1.0, 1.0])
    dro = IDRO(3, alpha=0.5, ema=0.1, rho=0.3, eps=0.01)
    loss, info = dro.robust_loss(per_query, torch.tensor([0, 2, 2]), [w])
    e = math.exp(-0.3)
    assert info["weights"].tolist() == pytest.approx([1 / (1 + e), 0.01, e / (1 + e)], abs=1e-6)
    assert info["cluster_loss"].tolist() == [4.0, 0.0, 1.0]
    assert info["cluster_count"].tolist() == [1.0, 0.0, 2.0]
    # loss = h0 * 4 + h2 * 1 = 2.723328; the graph was retained, so it still backwards: grad = [4 h0, h2].
    assert loss.item() == pytest.approx(4 / (1 + e) + e / (1 + e), abs=1e-6)
    loss.backward()
    assert w.grad.tolist() == pytest.approx([4 / (1 + e), e / (1 + e)], abs=1e-6)


def test_idro_h_to_the_power_ema_and_eps_clamp():
    # w = [1, 0]. Cluster 0: x = [3, 4] -> L0 = 3, unit grad [0.6, 0.8]. Cluster 1: x = [2, 0] -> L1 = 2,
    # unit grad [1, 0]; cos = 0.6. alpha = 1: R = [[9, 3.6], [3.6, 4]], column sums 12.6 and 7.6, over K = 3:
    # 4.2 and 2.5333; rho = 0.5: scores 2.1 and 1.26667, weights 1 and exp(-0.83333) = 0.434598.
    # Previous h = [0.64, 0.25, 0.11], ema = 0.5: h^ema = [0.8, 0.5, .] (a power, not a blend):
    # [0.8, 0.217299, 0] / 1.017299 = [0.786396, 0.213604, 0]; eps = 0.25 lifts clusters 1 and 2 to 0.25
    # with no renormalisation afterwards (sum 1.286).
    per_query, w = _linear_batch([[3.0, 4.0], [2.0, 0.0]], [1.0, 0.0])
    dro = IDRO(3, alpha=1.0, ema=0.5, rho=0.5, eps=0.25)
    dro.load_state_dict({"h": torch.tensor([0.64, 0.25, 0.11])})
    loss, info = dro.robust_loss(per_query, torch.tensor([0, 1]), [w])
    assert info["weights"].tolist() == pytest.approx([0.786396, 0.25, 0.25], abs=1e-6)
    assert loss.item() == pytest.approx(0.786396 * 3 + 0.25 * 2, abs=1e-5)


def test_idro_absent_clusters_zero_then_renormalised():
    # Tiny eps: the two present clusters share the mass 1; the absent ones keep only eps.
    per_query, w = _linear_batch([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0])
    dro = IDRO(5, eps=1e-9)
    _, info = dro.robust_loss(per_query, torch.tensor([1, 3]), [w])
    h = info["weights"]
    assert h[[1, 3]].sum().item() == pytest.approx(1.0)
    assert h[[0, 2, 4]].tolist() == pytest.approx([1e-9] * 3)
    # symmetric clusters (same loss, orthogonal gradients) get equal weights
    assert h[1].item() == pytest.approx(h[3].item())


def test_idro_needs_params_and_nonnegative_losses():
    per_query, w = _linear_batch([[1.0, 0.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="params"):
        IDRO(2).robust_loss(per_query, torch.tensor([0]))
    with pytest.raises(ValueError, match="non-negative"):
        IDRO(2).robust_loss(-per_query, torch.tensor([0]), [w])


def test_greedy_step_by_hand():
    # K = 4, alpha = 0.4, ema = 0.5, eps = 0.01. Batch: cluster 0 loss 3; cluster 1 losses 1, 1; cluster 2
    # loss 2; cluster 3 absent. Batch counts [1, 2, 1, 0], means [3, 1, 2, -].
    # avg_loss = 0.5 * 0 + 0.5 * mean (present only) = [1.5, 0.5, 1.0, 0].
    # count = 0.5 * 1 + 0.5 * n = [1, 1.5, 1, 0.5] -> freq [0.25, 0.375, 0.25, 0.125].
    # By avg loss: 0, 2, 1, 3 with freq 0.25, 0.25, 0.375, 0.125; cumsum < 0.4 only for cluster 0 -> 1/0.4 = 2.5.
    # Boundary cluster 2: (0.4 - 0.25) / (0.4 * 0.25) = 1.5 (covered mass 0.25 + 0.15 = alpha). Others eps.
    # Loss = (2.5 * 3 + 0.01 * 1 + 0.01 * 1 + 1.5 * 2) / 4 = 2.63.
    dro = GreedyDRO(4, alpha=0.4, ema=0.5, eps=0.01)
    loss, info = dro.robust_loss(torch.tensor([3.0, 1.0, 1.0, 2.0]), torch.tensor([0, 1, 1, 2]))
    assert info["avg_loss"].tolist() == pytest.approx([1.5, 0.5, 1.0, 0.0])
    assert info["weights"].tolist() == pytest.approx([2.5, 0.01, 1.5, 0.01])
    assert loss.item() == pytest.approx(2.63)
    assert dro.state_dict()["count"].tolist() == pytest.approx([1.0, 1.5, 1.0, 0.5])


def test_greedy_weights_boundary_cases():
    freq = torch.tensor([0.2, 0.3, 0.5])
    avg = torch.tensor([1.0, 2.0, 3.0])
    # the worst cluster alone exceeds alpha: it is the boundary, weight (0.25 - 0) / (0.25 * 0.5) = 2
    assert greedy_weights(avg, freq, 0.25, 0.01).tolist() == pytest.approx([0.01, 0.01, 2.0])
    # alpha = 1 covers everything with weight 1: plain mean loss
    assert greedy_weights(avg, freq, 1.0, 0.01).tolist() == pytest.approx([1.0, 1.0, 1.0])
    # ties keep the lower id first
    assert greedy_weights(torch.zeros(2), torch.tensor([0.5, 0.5]), 0.25, 0.01).tolist() == pytest.approx([2.0, 0.01])


def test_greedy_alpha_one_is_mean_loss():
    loss = torch.tensor([0.5, 1.5, 4.0], requires_grad=True)
    robust, _ = GreedyDRO(3, alpha=1.0).robust_loss(loss, torch.tensor([0, 1, 1]))
    assert robust.item() == pytest.approx(2.0)


def _batches():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 3, generator=g)
    return x, torch.tensor([[0, 1, 1, 3, 3, 3], [2, 2, 0, 1, 4, 4]])


@pytest.mark.parametrize("kind", ["idro", "greedy"])
def test_state_dict_round_trip_resumes_exactly(kind):
    x, clusters = _batches()
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.5]))
    a = make_dro(kind, 5)
    a.robust_loss((x[0] @ w) ** 2, clusters[0], [w])
    b = make_dro(kind, 5)
    b.load_state_dict(a.state_dict())
    loss_a, info_a = a.robust_loss((x[1] @ w) ** 2, clusters[1], [w])
    loss_b, info_b = b.robust_loss((x[1] @ w) ** 2, clusters[1], [w])
    assert loss_a.item() == loss_b.item()
    assert torch.equal(info_a["weights"], info_b["weights"])
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    with pytest.raises(ValueError, match="shape"):
        make_dro(kind, 4).load_state_dict(a.state_dict())


def test_update_false_keeps_state():
    dro = GreedyDRO(3)
    before = dro.state_dict()
    loss, _ = dro.robust_loss(torch.tensor([1.0, 2.0]), torch.tensor([0, 2]), update=False)
    assert loss.item() == pytest.approx(1.5)  # initial h = 1: the mean
    assert all(torch.equal(v, dro.state_dict()[k]) for k, v in before.items())


def test_make_dro_switch():
    assert make_dro("none", 10) is None
    idro = make_dro("idro", 10, rho=0.1)
    assert isinstance(idro, IDRO) and (idro.alpha, idro.ema, idro.rho, idro.eps) == (0.25, 0.1, 0.1, 0.01)
    assert isinstance(make_dro("greedy", 10, alpha=0.5), GreedyDRO)
    with pytest.raises(TypeError):
        make_dro("greedy", 10, rho=0.1)
    with pytest.raises(ValueError, match="unknown dro type"):
        make_dro("dro-greedy", 10)


def test_dro_summary():
    info = {
        "weights": torch.tensor([0.5, 0.01, 0.5]),
        "cluster_loss": torch.tensor([1.0, 0.0, 3.0]),
        "cluster_count": torch.tensor([2.0, 0.0, 1.0]),
    }
    summary = dro_summary(info)
    assert summary == pytest.approx(
        {"dro/clusters_present": 2, "dro/max_weight": 0.5, "dro/effective_clusters": 2.0, "dro/worst_cluster_loss": 3}
    )


# Two gloo ranks. Local mode: each cluster's queries all sit on one rank, so the global cluster losses and
# the summed cluster gradients equal a single process's over the whole batch, and so must the weights.
# Gathered mode (cross-device negatives): every rank holds the whole batch, only its own rows carrying
# gradient; the summed per-rank gradients are the full gradients, so again the weights match one process.
_X = [[4.0, 1.0], [1.0, 3.0], [2.0, 2.0], [0.5, 1.0], [3.0, 0.0]]
_C = [0, 0, 2, 1, 1]
_RANK_ROWS = [[0, 1, 2], [3, 4]]


def _step(dro, rows):
    per_query, w = _linear_batch([_X[i] for i in rows], [1.0, 0.5])
    _, info = dro.robust_loss(per_query, torch.tensor([_C[i] for i in rows]), [w])
    return info["weights"].tolist()


def _gathered_step(dro, rank):
    per_query, w = _linear_batch(_X, [1.0, 0.5])
    own = torch.tensor([i in _RANK_ROWS[rank] for i in range(len(_X))])
    per_query = torch.where(own, per_query, per_query.detach())  # as gather_with_grad leaves it
    _, info = dro.robust_loss(per_query, torch.tensor(_C), [w], global_batch=True)
    return info["weights"].tolist()


def _rank_main(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        local = [_step(make_dro(kind, 4), _RANK_ROWS[rank]) for kind in ("idro", "greedy")]
        gathered = [_gathered_step(IDRO(4, rho=1.0), rank), _gathered_step(GreedyDRO(4), rank)]
        out.put((rank, local + gathered))
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    everything = range(len(_X))
    expected = [_step(make_dro("idro", 4), everything), _step(make_dro("greedy", 4), everything)]
    expected += [_step(make_dro("idro", 4, rho=1.0), everything), expected[1]]
    for rank in (0, 1):
        for got, want in zip(results[rank], expected, strict=True):
            assert got == pytest.approx(want, abs=1e-6)


def test_last_layer_params_picks_the_last_layers():
    model = torch.nn.Module()
    model.encoder = torch.nn.Module()
    model.encoder.layer = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(12))
    model.pooler = torch.nn.Linear(2, 2)
    model.encoder.layer[11].bias.requires_grad_(False)
    params = last_layer_params(model, 3)
    layers = model.encoder.layer
    expected = [*layers[9].parameters(), *layers[10].parameters(), layers[11].weight]
    assert [id(p) for p in params] == [id(p) for p in expected]
    with pytest.raises(ValueError, match="layer"):
        last_layer_params(torch.nn.Linear(2, 2))


def test_last_layer_params_on_t5_picks_whole_blocks_not_sub_layers():
    """T5 names a block's parts `block.<i>.layer.<j>.`: the block index decides, in the encoder and the decoder."""
    from transformers import T5Config, T5Model

    model = T5Model(T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=4, num_heads=2))
    names = {id(p): n for n, p in model.named_parameters()}
    picked = sorted(names[id(p)] for p in last_layer_params(model, 2))
    expected = sorted(
        n for n in names.values() if any(f"{s}.block.{i}." in n for s in ("encoder", "decoder") for i in (2, 3))
    )
    assert picked == expected and any(".layer.0." in n for n in picked) and any(".layer.1." in n for n in picked)
