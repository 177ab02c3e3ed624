"""MIND (model/mind.py): routing, dynamic interest number, label-aware attention, losses, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.comirec import ComiRecSA
from model.mind import (
    MIND,
    B2IRouting,
    ItemEmbedding,
    MINDConfig,
    NegativeSampler,
    YouTubeDNN,
    interest_number,
    interest_similarity,
    label_aware_attention,
    max_over_interests,
    repel_penalty,
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
@pytest.mark.parametrize("cls", [MIND, YouTubeDNN, ComiRecSA])
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


def _aligned_logits(model, items, profile):
    """What the aligned objective's full softmax trains on: every item scored by `user_item_scores`."""
    interests, n = model.user_tower(items, profile)
    e_t = model.embedding(torch.ones(items.shape[0], dtype=torch.long))  # any target: the item scores ignore it
    return model.user_item_scores(interests, n, e_t, model.item_embeddings())


@pytest.mark.parametrize("whole_history", [False, True])
def test_aligned_objective_trains_on_the_serving_score(whole_history: bool):
    cfg = MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, objective="max", whole_history=whole_history)
    model = tiny(cfg).eval()
    items = left_padded([12, 7, 3, 1], 12)
    profile = torch.tensor([[1, 2], [0, 0], [2, 3], [1, 1]])
    target = torch.tensor([3, 8, 15, 21])
    with torch.no_grad():
        pos, logits = _aligned_logits(model, items, profile)
        serving = model.score_all(items, profile)
        # the training logit of every item is the serving score, computed independently here
        interests, n = model.user_tower(items, profile)
        by_hand = torch.tensor([
            [max(float(interests[b, k] @ e) for k in range(int(n[b]))) for e in model.item_embeddings()]
            for b in range(4)
        ])
        pos_t, _ = model.user_item_scores(interests, n, model.embedding(target), model.item_embeddings()[:1])
    assert torch.allclose(logits, serving, atol=1e-6)
    assert torch.allclose(serving, by_hand, atol=1e-5)
    assert torch.allclose(pos_t, serving[torch.arange(4), target], atol=1e-6)


@pytest.mark.parametrize("objective", ["max", "logsumexp"])
@pytest.mark.parametrize("sampler", ["log_uniform", "full"])
def test_aligned_objectives_give_every_valid_interest_gradient(objective: str, sampler: str):
    cfg = MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, n_neg=20, objective=objective,
                     sampler=sampler)
    model = tiny(cfg).train()
    items = left_padded([12] * 32, 12)  # K'u = 3 for everyone
    profile = torch.zeros(32, 2, dtype=torch.long)
    target = torch.randint(1, N_ITEMS + 1, (32,), generator=torch.Generator().manual_seed(3))
    interests, n, _ = model.train_forward(items, profile)
    interests.retain_grad()
    e_t = model.embedding(target)
    neg = torch.arange(1, N_ITEMS + 1)
    pos, scores = model.user_item_scores(interests, n, e_t, model.embedding(neg))
    F.cross_entropy(torch.cat([pos.unsqueeze(1), scores], 1), torch.zeros(32, dtype=torch.long)).backward()
    g = interests.grad.norm(dim=-1)  # [B, K]
    assert n.tolist() == [3] * 32
    assert torch.all(g[:, :3].sum(0) > 0)  # over the batch, each valid interest is pushed somewhere
    assert torch.all(g[:, 3] == 0)  # the closed interest never is
    # the paper's hard label-aware attention trains one interest per sample only
    model.zero_grad()
    la = tiny(MINDConfig(**{**cfg.__dict__, "objective": "label_aware"})).train()
    interests, n, _ = la.train_forward(items, profile)
    interests.retain_grad()
    pos, scores = la.user_item_scores(interests, n, la.embedding(target), la.embedding(neg))
    F.cross_entropy(torch.cat([pos.unsqueeze(1), scores], 1), torch.zeros(32, dtype=torch.long)).backward()
    assert torch.all((interests.grad.norm(dim=-1) > 0).sum(1) == 1)


def test_smooth_max_bounds_the_max_and_approaches_it():
    torch.manual_seed(0)
    s = torch.randn(5, 4, 7)  # [users, interests, items]
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    hard = max_over_interests(s, valid)
    for tau in (1.0, 0.1, 0.01):
        soft = max_over_interests(s, valid, tau)
        k = valid.sum(1, keepdim=True).float()
        assert torch.all(soft >= hard - 1e-6) and torch.all(soft <= hard + tau * torch.log(k) + 1e-5)
    assert torch.allclose(max_over_interests(s, valid, 1e-4), hard, atol=1e-3)
    # the max of a user's valid interests, never of a closed one
    assert torch.equal(hard[2], s[2, 0]) and torch.equal(hard[1], s[1, :2].max(0).values)


def test_repel_is_zero_for_orthogonal_interests_and_grows_as_they_align():
    d = 6
    n = torch.tensor([3])
    orthogonal = torch.eye(d)[:4].unsqueeze(0) * torch.tensor([2.0, 0.5, 3.0, 9.0]).view(1, 4, 1)
    assert repel_penalty(orthogonal, n).abs() < 1e-6
    values = []
    for a in (0.0, 0.5, 1.0, 2.0, 10.0):  # interests bent towards a shared direction
        V = torch.eye(d)[:4].unsqueeze(0) + a * torch.eye(d)[5]
        values.append(float(repel_penalty(V, n)))
    assert values[0] < 1e-6 and all(x < y for x, y in zip(values, values[1:], strict=False)) and values[-1] > 0.95
    # interest 3 is closed (K'u = 3): its direction does not count
    V = torch.eye(d)[:4].unsqueeze(0).clone()
    V[0, 3] = V[0, 0]
    assert repel_penalty(V, n).abs() < 1e-6
    # users with a single interest have no pairs and add nothing
    sim, has = interest_similarity(torch.randn(2, 4, d), torch.tensor([1, 4]))
    assert has.tolist() == [False, True] and sim[0] == 0


def test_repel_weight_adds_to_the_loss():
    items = left_padded([10] * 16, 12)
    profile = torch.zeros(16, 2, dtype=torch.long)
    target = torch.randint(1, N_ITEMS + 1, (16,), generator=torch.Generator().manual_seed(3))

    def loss_of(repel: float):
        model = tiny(MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, n_neg=10, repel=repel)).train()
        torch.manual_seed(7)
        return model, model.loss(items, profile, target)

    _, plain = loss_of(0.0)
    model, repelled = loss_of(1.0)
    torch.manual_seed(7)
    V, n, _ = model.train_forward(items, profile)
    assert torch.isclose(repelled - plain, repel_penalty(V, n), atol=1e-5)


def test_whole_history_interest_is_mind_1s_capsule():
    cfg = MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, whole_history=True)
    model = tiny(cfg).eval()
    one = tiny(MINDConfig(**{**cfg.__dict__, "K": 1, "whole_history": False})).eval()
    one.routing.S.load_state_dict(model.routing.S.state_dict())
    items = left_padded([12, 7, 3, 1], 12)
    e = model.embedding(items)
    mask = items > 0
    u, w = model.routing(e, mask, interest_number(mask, 4))
    u1, _ = one.routing(e, mask, interest_number(mask, 1))
    assert torch.allclose(u[:, 0], u1[:, 0], atol=1e-6)  # interest 0 = MIND-1's capsule, same S
    assert torch.equal(w[:, :, 0], mask.float())  # every behavior feeds it fully
    n = interest_number(mask, 4)
    assert n.tolist() == [3, 2, 1, 1]
    for b, k in enumerate(n.tolist()):  # K'u - 1 routed interests, the rest closed
        assert torch.all(u[b, k:] == 0) and torch.all(w[b, :, k:] == 0)
        if k > 1:
            assert torch.allclose(w[b][mask[b]][:, 1:k].sum(-1), torch.ones(int(mask[b].sum())), atol=1e-6)
    # K = 1: MIND-K with a whole-history interest is MIND-1
    solo = B2IRouting(d=8, K=1, r=3, sigma=1.0, max_len=12, seed=0, whole_history=True).eval()
    solo.S.load_state_dict(model.routing.S.state_dict())
    assert torch.allclose(solo(e, mask, torch.ones(4, dtype=torch.long))[0], u1, atol=1e-6)


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective"):
        tiny(MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, objective="nope"))


def test_comirec_sa_attends_over_real_behaviors_with_k_fixed_interests():
    model = tiny(cls=ComiRecSA).eval()
    items = left_padded([12, 5, 1], 12)
    profile = torch.zeros(3, 2, dtype=torch.long)
    a = model.coupling(items, profile)
    interests, n = model.user_tower(items, profile)
    assert n.tolist() == [4, 4, 4]  # the paper's fixed K
    assert torch.all(a[items == 0] == 0)
    assert torch.allclose(a.sum(1), torch.ones(3, 4), atol=1e-6)  # each head's attention sums to 1
    # V_u^k = sum_l a_lk e_l: a user with one behavior has K copies of its embedding
    assert torch.allclose(interests[2], model.embedding(items[2, -1:]).expand(4, -1), atol=1e-6)
    # the amount of padding does not change a user's interests (positions count from the most recent behavior)
    shorter = items[1:, -6:]  # the users with 5 and 1 behaviors, with less padding
    assert torch.allclose(model.user_tower(shorter, profile[1:])[0], interests[1:], atol=1e-6)


def test_the_live_interest_similarity_metric_observes_users_with_several_interests():
    from prometheus_client import REGISTRY

    from stream.worker.interests import observe_interest_similarity

    def below(le: str) -> float:  # observations <= le (the histogram has no _sum: its buckets go below 0)
        return REGISTRY.get_sample_value("mindstream_interest_similarity_bucket", {"le": le}) or 0.0

    before = {le: below(le) for le in ("0.0", "0.99", "1.0")}
    same = np.tile(np.eye(4, 6)[:1], (4, 1)).astype(np.float32)  # four copies of one vector: collapsed
    orthogonal = np.eye(4, 6).astype(np.float32)
    observe_interest_similarity([same, orthogonal, orthogonal], [3, 4, 1])  # the K'u = 1 user has no pair
    added = {le: below(le) - n for le, n in before.items()}
    assert added == {"0.0": 1, "0.99": 1, "1.0": 2}  # cosine 0 (orthogonal) and 1 (collapsed), nothing else


def test_the_live_interest_cosine_is_the_offline_one():
    from stream.worker.interests import interest_cosines

    V, n = torch.randn(6, 4, 8), torch.tensor([1, 2, 3, 4, 4, 1])
    sim, has = interest_similarity(V, n)
    live = interest_cosines(list(V.numpy()), n.tolist())
    assert live.shape == (4,)
    assert np.allclose(live, sim[has].numpy(), atol=1e-6)


def test_init_std_sets_the_embeddings_scale_and_zero_means_d_to_the_minus_half():
    def std_of(init_std: float) -> tuple[float, float]:
        torch.manual_seed(0)
        emb = ItemEmbedding(2000, 50, torch.zeros(2001, 1, dtype=torch.long), torch.ones(2001), d=64,
                            init_std=init_std)
        return float(emb.id_emb.weight[1:].std()), float(emb.cat_emb.weight[1:].std())
    assert std_of(0.0) == pytest.approx((64**-0.5, 64**-0.5), rel=0.1)
    assert std_of(0.01) == pytest.approx((0.01, 0.01), rel=0.1)
    model = tiny(MINDConfig(d=8, K=4, max_len=12, hidden=(16,), profile_dim=4, init_std=0.01))
    assert float(model.embedding.id_emb.weight[1:].std()) == pytest.approx(0.01, rel=0.2)
    with pytest.raises(ValueError, match="init_std"):
        ItemEmbedding(10, 0, torch.zeros(11, 1, dtype=torch.long), torch.ones(11), d=8, init_std=-1.0)
