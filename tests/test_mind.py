"""MIND (model/mind.py): routing, dynamic interest number, label-aware attention, losses, baselines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.mind import (
    MIND,
    B2IRouting,
    ItemEmbedding,
    MINDConfig,
    NegativeSampler,
    YouTubeDNN,
    interest_number,
    label_aware_attention,
    routing_regularization,
    squash,
)

N_ITEMS = 30


def tiny(cfg: MINDConfig | None = None, cls=MIND, **kw):
    torch.manual_seed(0)
    cfg = cfg or MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, n_neg=10)
    cats = torch.randint(0, 5, (N_ITEMS + 1, 2))
    return cls(cfg, N_ITEMS, item_categories=cats, n_categories=4, profile_sizes=[3, 4], **kw)


def left_padded(lengths: list[int], L: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    items = torch.zeros(len(lengths), L, dtype=torch.long)
    for b, n in enumerate(lengths):
        if n:
            items[b, L - n :] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return items


def test_interest_number_follows_the_papers_rule():
    lengths = list(range(0, 70))
    mask = left_padded(lengths, 70) > 0
    got = interest_number(mask, K=4).tolist()
    want = [max(1, min(4, math.floor(math.log2(n)))) if n else 1 for n in lengths]
    assert got == want
    assert interest_number(mask, K=4, dynamic=False).tolist() == [4] * len(lengths)


def test_padding_gets_zero_coupling_and_extra_interests_are_masked():
    model = tiny().eval()
    items = left_padded([12, 5, 2, 1], 12)
    profile = torch.tensor([[1, 2], [0, 0], [2, 3], [1, 1]])
    w = model.coupling(items, profile)
    interests, n = model.user_tower(items, profile)
    assert n.tolist() == [3, 2, 1, 1]
    pad = items == 0
    assert torch.all(w[pad] == 0)
    # each real behavior distributes exactly its unit of weight over the K'u valid interests
    assert torch.allclose(w[~pad].sum(-1), torch.ones((~pad).sum()), atol=1e-6)
    for b, k in enumerate(n.tolist()):
        assert torch.all(w[b, :, k:] == 0)
        assert torch.all(interests[b, k:] == 0)
        assert torch.all(interests[b, :k].norm(dim=-1) > 0)


def test_padding_does_not_change_a_users_interests():
    # serving pads to whatever length the batch has: the interests must not depend on it
    model = tiny().eval()
    short = left_padded([5], 5)
    long = torch.cat([torch.zeros(1, 7, dtype=torch.long), short], dim=1)
    prof = torch.tensor([[1, 2]])
    a, na = model.user_tower(short, prof)
    b, nb = model.user_tower(long, prof)
    assert na.tolist() == nb.tolist() == [2]
    assert torch.allclose(a, b, atol=1e-6)


def test_squash_keeps_direction_and_bounds_norm_below_one():
    z = torch.randn(64, 8) * torch.logspace(-3, 3, 64).unsqueeze(-1)
    u = squash(z)
    norms = u.norm(dim=-1)
    assert torch.all(norms < 1) and torch.all(norms >= 0)
    assert torch.allclose(F.cosine_similarity(u, z, dim=-1), torch.ones(64), atol=1e-5)
    zn = z.norm(dim=-1)
    assert torch.allclose(norms, zn**2 / (1 + zn**2), rtol=1e-4)


def _two_cluster_user(seed: int, d: int = 16, scale: float = 6.0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.eye(d)[0], torch.eye(d)[1]
    A = scale * a + 0.1 * scale * torch.randn(5, d, generator=g)
    B = scale * b + 0.1 * scale * torch.randn(5, d, generator=g)
    e = torch.cat([A, B])[torch.randperm(10, generator=g)].unsqueeze(0)
    return e, torch.stack([a, b])


def _separates(r: int, seed: int) -> bool:
    e, centers = _two_cluster_user(seed)
    routing = B2IRouting(d=16, K=2, r=r, sigma=1.0, max_len=10, seed=seed).eval()
    with torch.no_grad():
        routing.S.weight.copy_(torch.eye(16))  # behavior space = interest space, to compare with the clusters
        u, _ = routing(e, torch.ones(1, 10, dtype=torch.bool), torch.tensor([2]))
    cos = F.cosine_similarity(u[0].unsqueeze(1), centers.unsqueeze(0), dim=-1)  # [interest, cluster]
    return bool(((cos[0, 0] > 0.9) & (cos[1, 1] > 0.9)) | ((cos[0, 1] > 0.9) & (cos[1, 0] > 0.9)))


def test_routing_finds_one_interest_per_disjoint_cluster():
    # A user clicks two disjoint item clusters. With the paper's r = 3 iterations the agreement updates
    # b_ij += u_j^T S e_i pull each interest capsule onto one cluster (for almost every random b init);
    # a single iteration (no agreement step, random b only) rarely does.
    seeds = range(40)
    routed = sum(_separates(3, s) for s in seeds) / len(seeds)
    random_only = sum(_separates(1, s) for s in seeds) / len(seeds)
    assert routed >= 0.9
    assert random_only <= 0.5
    assert all(_separates(8, s) for s in seeds)


def test_hard_attention_selects_the_argmax_valid_interest():
    torch.manual_seed(0)
    V = torch.randn(6, 4, 8)
    target = torch.randn(6, 8)
    n = torch.tensor([4, 4, 3, 2, 1, 4])
    v = label_aware_attention(V, n, target, math.inf)
    scores = torch.einsum("bkd,bd->bk", V, target)
    for b in range(6):
        k = int(scores[b, : n[b]].argmax())
        assert torch.equal(v[b], V[b, k])
    # p = 0: plain mean of the valid interests; large finite p approaches the hard choice
    v0 = label_aware_attention(V, n, target, 0.0)
    for b in range(6):
        assert torch.allclose(v0[b], V[b, : n[b]].mean(0), atol=1e-6)
    assert torch.allclose(label_aware_attention(V, n, target, 1e4), v, atol=1e-4)
    # negative scores with a non-integer p stay well defined
    assert torch.isfinite(label_aware_attention(V, n, -target, 0.5)).all()


def test_cold_item_with_known_category_gets_its_category_mean():
    cats = torch.tensor([[0, 0], [1, 2], [2, 0], [1, 0]])
    seen = torch.tensor([False, True, False, True])
    emb = ItemEmbedding(n_items=3, n_categories=2, item_categories=cats, seen=seen, d=4)
    out = emb(torch.tensor([0, 1, 2, 3]))
    c = emb.cat_emb.weight
    assert torch.all(out[0] == 0)  # padding
    assert torch.allclose(out[1], (emb.id_emb.weight[1] + c[1] + c[2]) / 3)
    assert torch.allclose(out[2], c[2])  # never seen in training: its id embedding is untrained noise
    assert torch.allclose(out[3], (emb.id_emb.weight[3] + c[1]) / 2)


def test_negative_samplers():
    freq = torch.tensor([0, 50, 1, 10, 0, 5])
    lu = NegativeSampler("log_uniform", freq).q
    assert lu[0] == 0 and torch.isclose(lu.sum(), torch.tensor(1.0))
    assert lu[1] > lu[3] > lu[5] > lu[2]  # Zipf over popularity rank
    pop = NegativeSampler("popularity", freq).q
    assert pop[4] > 0 and pop[1] > pop[3]
    uni = NegativeSampler("uniform", freq)
    assert torch.allclose(uni.q[1:], torch.full((5,), 0.2))
    idx, log_q = uni(1000)
    assert idx.min() >= 1 and idx.max() <= 5 and torch.allclose(log_q, torch.log(torch.tensor(0.2)))
    with pytest.raises(ValueError):
        NegativeSampler("nope", freq)


@pytest.mark.parametrize("sampler", ["uniform", "log_uniform", "popularity", "full"])
@pytest.mark.parametrize("cls", [MIND, YouTubeDNN])
def test_training_learns_a_learnable_task(sampler: str, cls):
    # three item clusters (1-10, 11-20, 21-30); a user browses one and then picks its "hub" item
    cfg = MINDConfig(d=16, K=2, max_len=6, hidden=(32,), profile_dim=4, n_neg=10, sampler=sampler)
    model = tiny(cfg, cls, item_freq=torch.arange(N_ITEMS + 1))
    g = torch.Generator().manual_seed(5)
    cluster = torch.randint(0, 3, (64, 1), generator=g)
    items = cluster * 10 + torch.randint(2, 11, (64, 6), generator=g)
    items[:8, :3] = 0  # some padding
    target = cluster[:, 0] * 10 + 1
    profile = torch.zeros(64, 2, dtype=torch.long)

    def top5_hits() -> float:
        model.eval()
        top = model.score_all(items, profile)[:, 1:].topk(5).indices + 1
        model.train()
        return (top == target.unsqueeze(1)).any(1).float().mean().item()

    before = top5_hits()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    torch.manual_seed(0)
    for _ in range(100):
        loss = model.loss(items, profile, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isfinite(loss.item())
    after = top5_hits()
    assert after > before and after >= 0.95


def test_youtube_dnn_has_the_tower_interface_with_one_vector():
    model = tiny(cls=YouTubeDNN).eval()
    items = left_padded([12, 3, 1], 12)
    interests, n = model.user_tower(items, torch.zeros(3, 2, dtype=torch.long))
    assert interests.shape == (3, 1, 8) and n.tolist() == [1, 1, 1]
    w = model.coupling(items, torch.zeros(3, 2, dtype=torch.long))
    assert torch.allclose(w.sum(1).squeeze(-1), torch.ones(3))
    assert model.score_all(items, torch.zeros(3, 2, dtype=torch.long)).shape == (3, N_ITEMS + 1)


def test_routing_regularization_penalises_collapsed_routing():
    mask = torch.ones(1, 8, dtype=torch.bool)
    spread = torch.full((1, 8, 2), 0.5)  # every behavior split evenly: no interest relies on one item
    collapsed = torch.zeros(1, 8, 2)
    collapsed[0, 0, 0] = collapsed[0, 1:, 1] = 1.0  # interest 0 fed by a single behavior
    assert routing_regularization(spread, mask) == 0
    assert routing_regularization(collapsed, mask) > 0.01
    # padding rows are ignored
    padded = torch.cat([torch.zeros(1, 4, 2), spread], dim=1)
    assert routing_regularization(padded, torch.cat([torch.zeros(1, 4, dtype=torch.bool), mask], 1)) == 0


def test_remi_options_change_the_training_objective():
    items = left_padded([10] * 16, 12)
    profile = torch.zeros(16, 2, dtype=torch.long)
    target = torch.randint(1, N_ITEMS + 1, (16,), generator=torch.Generator().manual_seed(3))
    base_cfg = MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, n_neg=10)

    def loss_of(**changes):
        model = tiny(MINDConfig(**{**base_cfg.__dict__, **changes})).train()
        torch.manual_seed(7)  # same routing draw and the same negatives for every variant
        return model.loss(items, profile, target)

    plain = loss_of()
    # routing regularisation adds lambda * penalty (>= 0) on top of the same sampled softmax
    reg = loss_of(routing_reg=10.0)
    assert reg > plain
    # interest-aware hard negatives reweight towards high-scoring negatives: a different objective,
    # and one that only ever equals the plain loss when every negative scores the same
    hard = loss_of(hard_neg_beta=5.0)
    assert not torch.isclose(hard, plain)
    assert hard > plain
    hard.backward()
