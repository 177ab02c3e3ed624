"""MIND: Multi-Interest Network with Dynamic routing (Li et al., CIKM 2019), Section 3, in one file.

Reading order mirrors the paper:
  3.2 Embedding & Pooling Layer      -> ItemEmbedding, ProfileEmbedding
  3.3 Multi-Interest Extractor (B2I) -> B2IRouting, squash, interest_number
  3.4 H-layer                        -> HLayer
  3.5 Label-aware Attention Layer    -> label_aware_attention (+ the serving-aligned option, max_over_interests)
  3.6 Training (sampled softmax)     -> Tower.loss, NegativeSampler
  + YouTubeDNN (Covington et al. 2016), the single-vector baseline with the same interface.

Index conventions (docs/DESIGN.md): item index 0 is padding, items are 1..N; category and profile
index 0 means "none/unknown". Optional training fixes from REMI (Xie et al., RecSys 2023):
interest-aware hard negative sampling (`hard_neg_beta`) and routing regularisation (`routing_reg`).
Optional fixes from the follow-up literature, all off by default: a training objective that scores every
item as serving does (`objective="max"` or its smooth bound `"logsumexp"`), the user-representation repel
penalty (`repel`, Xiong & Yu 2024), and a routing-free whole-history interest (`whole_history`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.settings import setting

SAMPLERS = ("uniform", "log_uniform", "popularity", "full")
OBJECTIVES = ("label_aware", "max", "logsumexp")
NEG = -1e9  # a finite "minus infinity": softmax of it is exactly 0, and ONNX/onnxruntime never see inf - inf


def widths(text: str) -> tuple[int, ...]:
    """"256,128" -> (256, 128): the H-layer's widths as a flag or environment variable gives them."""
    return tuple(int(w) for w in text.split(",") if w.strip())


@dataclass
class MINDConfig:
    """The model's settings; each is also a flag of `mindstream train` and the variable MINDSTREAM_<FLAG>."""

    d: int = setting(64, "embedding and interest capsule dimension")
    K: int = setting(4, "maximum number of interests")
    r: int = setting(3, "dynamic routing iterations")
    sigma: float = setting(1.0, "std of the Gaussian routing-logit initialisation b_ij ~ N(0, sigma^2)")
    p: float = setting(math.inf, "label-aware attention power; inf = hard attention (the paper's best setting)")
    max_len: int = setting(50, "most recent behaviors per user fed to the tower")
    n_neg: int = setting(100, "sampled-softmax negatives per batch")
    sampler: str = setting("log_uniform", "negative sampling: uniform, log_uniform (Zipf over popularity rank), "
                           "popularity or full (full softmax, small catalogs)", choices=SAMPLERS)
    hidden: tuple[int, ...] = setting((256,), "H-layer ReLU widths, comma separated; a linear projection back to d "
                                      "follows", parse=widths)
    profile_dim: int = setting(16, "embedding size of each user profile field")
    # K'u interests per user; False (the flag --static-k): always K
    dynamic_k: bool = setting(True, "always K interests instead of K'u = max(1, min(K, floor(log2 |Iu|)))",
                              flag="--static-k")
    routing_seed: int = 0  # seed of the fixed b_ij draw used at serving time (see B2IRouting)
    hard_neg_beta: float = setting(0.0, "REMI interest-aware hard negatives: weight negatives by exp(beta * score); "
                                   "0 = off")
    routing_reg: float = setting(0.0, "REMI routing regularisation weight lambda; 0 = off")
    id_dropout: float = setting(0.0, "DropoutNet: share of items whose id embedding is dropped per training step; "
                                "0 = off")
    dropout: float = setting(0.0, "dropout in the H-layer")
    # Adam steps every coordinate by about lr, so lr against this scale sets how fast item vectors move
    # (docs/results/ablations.md, Round 7)
    init_std: float = setting(0.0, "std of the item and category embeddings' initialisation; 0 = d^-0.5")
    # max scores by max_k e_i . v_u^k, what serving ranks by; logsumexp by tau * logsumexp_k(e_i . v_u^k / tau)
    objective: str = setting("label_aware", "label_aware = the paper's label-aware attention picks the user vector "
                             "the item is scored with; max = every item (target and negatives) scored by the max "
                             "over interests, as serving does; logsumexp = its smooth bound", choices=OBJECTIVES)
    tau: float = setting(0.1, "temperature of --objective logsumexp")
    repel: float = setting(0.0, "weight of the repel penalty on the mean pairwise cosine of a user's interests; "
                           "0 = off")
    whole_history: bool = setting(False, "interest 0 is the routing-free capsule of the whole history (MIND-1's)")
    extra: dict = field(default_factory=dict)  # free-form notes carried into the release manifest

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        out["p"] = "inf" if math.isinf(self.p) else self.p
        return out

    @classmethod
    def from_dict(cls, d: dict) -> MINDConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (256,)))
        d["p"] = float(d.get("p", math.inf))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# 3.2 Embedding & Pooling Layer
# ---------------------------------------------------------------------------------------------


class ItemEmbedding(nn.Module):
    """e_i = average of the item-id embedding and the embeddings of the item's categories.

    `item_categories` [N+1, C] holds up to C category indices per item (0 = none). `seen` [N+1] marks
    ids that occur in training: an unseen id's embedding is never trained, so it is left out of the
    average and a cold item with a known category is represented by its category mean.

    `id_dropout` (DropoutNet, Volkovs et al. 2017): in training, each step leaves out the id embedding of
    that share of the items that have a category, so the category mean alone is trained to stand for an item,
    which is what serves a new item (model/new_items.py).
    """

    def __init__(self, n_items: int, n_categories: int, item_categories: Tensor, seen: Tensor, d: int,
                 id_dropout: float = 0.0, init_std: float = 0.0):
        super().__init__()
        self.id_dropout = id_dropout
        self.id_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.cat_emb = nn.Embedding(max(n_categories, 1) + 1, d, padding_idx=0)
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0 (0 = d^-0.5), not {init_std}")
        std = init_std if init_std > 0 else d**-0.5
        nn.init.normal_(self.id_emb.weight, std=std)
        nn.init.normal_(self.cat_emb.weight, std=std)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
            self.cat_emb.weight[0].zero_()
        seen = seen.clone().bool()
        seen[0] = False
        self.register_buffer("item_categories", item_categories.long(), persistent=True)
        self.register_buffer("seen", seen, persistent=True)

    def forward(self, items: Tensor) -> Tensor:
        if items.numel() > self.seen.shape[0]:
            # the same vectors: pooling every catalog row once and gathering is cheaper than pooling each lookup
            return self.all()[items]
        return self._pool(items)

    def _pool(self, items: Tensor) -> Tensor:
        cats = self.item_categories[items]  # [..., C]
        id_w = self.seen[items].unsqueeze(-1).float()  # [..., 1]
        cat_w = (cats > 0).unsqueeze(-1).float()  # [..., C, 1]
        if self.training and self.id_dropout > 0:
            # one draw per item and call: every lookup of an item within this call agrees
            keep = torch.rand(self.seen.shape[0], device=items.device) >= self.id_dropout
            id_w = id_w * (keep[items] | (cats == 0).all(-1)).unsqueeze(-1).float()
        total = self.id_emb(items) * id_w + (self.cat_emb(cats) * cat_w).sum(-2)
        count = id_w + cat_w.sum(-2)
        return total / count.clamp(min=1.0)  # padding (count 0) stays the zero vector

    def all(self) -> Tensor:
        return self._pool(torch.arange(self.id_emb.num_embeddings, device=self.id_emb.weight.device))


class ProfileEmbedding(nn.Module):
    """User profile fields (age, gender, ...) embedded separately and concatenated, as in the paper."""

    def __init__(self, field_sizes: list[int], dim: int):
        super().__init__()
        # sizes count index 0 (unknown), as Vocab.profile_sizes()
        self.fields = nn.ModuleList(nn.Embedding(max(n, 1), dim) for n in field_sizes)
        self.out_dim = dim * len(field_sizes)

    def forward(self, profile: Tensor) -> Tensor:
        if not self.fields:
            return profile.new_zeros((profile.shape[0], 0), dtype=torch.float32)
        return torch.cat([emb(profile[:, f]) for f, emb in enumerate(self.fields)], dim=-1)


# ---------------------------------------------------------------------------------------------
# 3.3 Multi-Interest Extractor Layer: Behavior-to-Interest (B2I) dynamic routing
# ---------------------------------------------------------------------------------------------


def squash(z: Tensor, eps: float = 1e-9) -> Tensor:
    """Eq. (squash): u = |z|^2 / (1 + |z|^2) * z / |z|; keeps the direction, maps the norm into [0, 1)."""
    n2 = (z * z).sum(-1, keepdim=True)
    return z * (n2 / (1.0 + n2)) / torch.sqrt(n2 + eps)


def valid_interests(n_interests: Tensor, K: int) -> Tensor:
    """[B, K] bool: interest k of user b is one of its K'u = n_interests[b] valid ones."""
    return torch.arange(K, device=n_interests.device).unsqueeze(0) < n_interests.unsqueeze(1)


def interest_number(mask: Tensor, K: int, dynamic: bool = True) -> Tensor:
    """K'u = max(1, min(K, floor(log2 |Iu|))) from the number of non-padding behaviors; [B] int64."""
    if not dynamic:
        return torch.full(mask.shape[:1], K, dtype=torch.long, device=mask.device)
    n = mask.float().sum(-1).clamp(min=1.0)
    # the 1e-4 guards exact powers of two against float rounding of log2
    return torch.floor(torch.log2(n) + 1e-4).long().clamp(min=1, max=K)


class B2IRouting(nn.Module):
    """Algorithm 1 of the paper, with one bilinear map S shared by every (behavior, interest) pair.

    Routing logits b_ij are drawn from N(0, sigma^2) because with b = 0 every interest would receive
    the same weights and all capsules would coincide. In training a fresh draw is made each forward
    (the paper). In eval mode - serving, ONNX export, evaluation - a draw fixed once from
    `routing_seed` and stored as the buffer `b_init` [max_len, K] is used, so a user's interests are
    a deterministic function of the behaviors. Histories are LEFT-padded (most recent behavior in
    the last column, as model.data.Split) and at most max_len long.

    With `whole_history`, interest 0 is the capsule MIND-1 computes, squash(sum_i S e_i): with a single
    interest the routing softmax is 1 for every behavior, so it needs no routing. The other K'u - 1
    interests are routed as above. MIND-K then holds MIND-1 as the special case of users with K'u = 1.
    """

    def __init__(self, d: int, K: int, r: int, sigma: float, max_len: int, seed: int, whole_history: bool = False):
        super().__init__()
        self.K, self.r, self.sigma, self.whole_history = K, r, sigma, whole_history
        self.routed = K - 1 if whole_history else K  # capsules that take part in the routing
        self.S = nn.Linear(d, d, bias=False)  # the shared bilinear mapping matrix S
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("b_init", torch.randn(max_len, self.routed, generator=g) * sigma, persistent=True)

    def forward(self, e: Tensor, mask: Tensor, k_valid: Tensor) -> tuple[Tensor, Tensor]:
        """e [B,L,d] behavior embeddings, mask [B,L] bool, k_valid [B] -> capsules u [B,K,d], coupling w [B,L,K]."""
        Se = self.S(e)  # S e_i, [B, L, d]
        behavior = mask.unsqueeze(-1).float()
        if not self.whole_history:
            return self._route(Se, behavior, k_valid)
        u0 = squash((Se * behavior).sum(1, keepdim=True))
        if self.routed == 0:
            return u0, behavior
        u, w = self._route(Se, behavior, k_valid - 1)
        return torch.cat([u0, u], 1), torch.cat([behavior, w], 2)

    def _route(self, Se: Tensor, behavior: Tensor, k_valid: Tensor) -> tuple[Tensor, Tensor]:
        B, L, _ = Se.shape
        K = self.routed
        if self.training:
            b = torch.randn(B, L, K, device=Se.device) * self.sigma
        else:
            # right-aligned: histories are left-padded, so the most recent behavior always meets the
            # same draw and a user's interests do not depend on how much padding the batch has
            b = self.b_init[self.b_init.shape[0] - L :].unsqueeze(0).expand(B, L, K)
        interest_ok = valid_interests(k_valid, K)  # [B, K]
        # interests beyond K'u take no weight; padding behaviors route nothing anywhere
        closed = ~interest_ok.unsqueeze(1)  # [B, 1, K]
        open_ = interest_ok.unsqueeze(1).float()  # zeroes the uniform softmax of a user with no open interest
        u = Se.new_zeros(B, K, Se.shape[-1])
        w = Se.new_zeros(B, L, K)
        for it in range(self.r):
            w = torch.softmax(b.masked_fill(closed, NEG), dim=-1) * behavior * open_  # w_ij = softmax_j(b_ij)
            z = torch.einsum("blk,bld->bkd", w, Se)  # z_j = sum_i w_ij S e_i
            u = squash(z)
            if it < self.r - 1:
                b = b + torch.einsum("bkd,bld->blk", u, Se)  # b_ij += u_j^T S e_i
        u = u * interest_ok.unsqueeze(-1).float()
        return u, w


def routing_regularization(w: Tensor, mask: Tensor) -> Tensor:
    """REMI's routing regularisation, penalising ||diag(Cov)||^2 of each interest's routing weights.

    Routing collapse in multi-interest models means an interest is fed by one or two behaviors (its
    weights over the sequence are near one-hot); the variance of w_.j across the user's behaviors
    measures exactly that. Cov is computed over the valid behaviors only.
    """
    m = mask.unsqueeze(-1).float()  # [B, L, 1]
    n = m.sum(1).clamp(min=1.0)  # [B, 1]
    mean = (w * m).sum(1) / n  # [B, K]
    c = (w - mean.unsqueeze(1)) * m
    var = (c * c).sum(1) / n  # diag of the K x K covariance, [B, K]
    return (var * var).sum(-1).mean()


# ---------------------------------------------------------------------------------------------
# 3.4 H-layer and 3.5 Label-aware Attention
# ---------------------------------------------------------------------------------------------


class HLayer(nn.Module):
    """ReLU layers on [capsule ; profile]; the last layer is linear because user vectors are matched to
    signed item embeddings by inner product, which a final ReLU would restrict to the positive orthant."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], d: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = h
        layers.append(nn.Linear(in_dim, d))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def label_aware_attention(V: Tensor, n_interests: Tensor, e_target: Tensor, p: float) -> Tensor:
    """v_u = sum_k softmax(pow(V_u^T e_target, p))_k V_u^k over the K'u valid interests.

    The paper raises the raw score to the power p, which is undefined for a negative score and a
    non-integer p. We take the power of the softmax-normalised scores instead, renormalised:
    a_k = softmax(s)_k^p / sum_j softmax(s)_j^p = softmax(p * s)_k. It is defined for every p >= 0 and
    keeps the paper's limits: p = 0 averages the interests, p = 1 is a softmax, p -> inf picks the
    interest closest to the target; p = inf is implemented exactly as that hard argmax.
    """
    s = torch.einsum("bkd,bd->bk", V, e_target)
    valid = valid_interests(n_interests, V.shape[1])
    if math.isinf(p):
        a = F.one_hot(s.masked_fill(~valid, NEG).argmax(-1), V.shape[1]).to(V.dtype)
    else:
        a = torch.softmax((p * s).masked_fill(~valid, NEG), dim=-1)
    return torch.einsum("bk,bkd->bd", a, V)


def max_over_interests(s: Tensor, valid: Tensor, tau: float = 0.0) -> Tensor:
    """The serving score of an item, max over the K'u valid interests of e_i . v_u^k: s [B, K, ...] -> [B, ...],
    valid [B, K] as `valid_interests`.

    As a training objective (`objective="max"`) it scores the target and every negative the way recall
    ranks them, so an interest that scores unrelated items high is penalised, which label-aware attention
    never does: it scores the negatives against the target's interest alone. tau > 0
    (`objective="logsumexp"`) gives the smooth bound tau * logsumexp_k(s_k / tau), at most tau * log K'u
    above the max, which passes gradient to every interest in proportion to its softmax weight.
    """
    s = s.masked_fill(~valid.view(*valid.shape, *([1] * (s.dim() - 2))), NEG)
    if tau <= 0:
        return s.max(1).values
    return tau * torch.logsumexp(s / tau, dim=1)


def interest_similarity(V: Tensor, n_interests: Tensor) -> tuple[Tensor, Tensor]:
    """Mean pairwise cosine of each user's valid interests [B], and [B] bool: the user has two or more.

    Values near 1 mean the interests collapsed into copies of one vector (routing collapse).
    """
    valid = valid_interests(n_interests, V.shape[1])
    unit = F.normalize(V, dim=-1)
    cos = unit @ unit.transpose(1, 2)  # [B, K, K]
    eye = torch.eye(V.shape[1], dtype=torch.bool, device=V.device)
    pairs = valid.unsqueeze(1) & valid.unsqueeze(2) & ~eye
    n_pairs = pairs.sum((1, 2))
    return (cos * pairs).sum((1, 2)) / n_pairs.clamp(min=1), n_pairs > 0


def repel_penalty(V: Tensor, n_interests: Tensor) -> Tensor:
    """User representation repel (Xiong & Yu 2024): the mean pairwise cosine of a user's interests, averaged
    over the users that have several. 0 for orthogonal interests, rising to 1 as they align."""
    sim, has_pairs = interest_similarity(V, n_interests)
    return (sim * has_pairs).sum() / has_pairs.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# 3.6 Training: sampled softmax (plus full softmax for small catalogs)
# ---------------------------------------------------------------------------------------------


class NegativeSampler(nn.Module):
    """Draws shared negatives for a batch and returns log q(j) for the sampled-softmax correction.

    uniform: q uniform over items 1..N. log_uniform: the Zipfian sampler of Jean et al./TensorFlow over
    items ranked by training popularity, q(rank k) = log((k+2)/(k+1)) / log(N+1). popularity:
    q proportional to count^0.75 (word2vec's smoothing). Subtracting log q from the logits makes the
    sampled loss an unbiased estimate of the full softmax gradient direction.
    """

    def __init__(self, kind: str, item_freq: Tensor):
        super().__init__()
        n = item_freq.shape[0] - 1
        freq = item_freq.float().clone()
        freq[0] = 0.0
        if kind == "uniform":
            q = torch.ones(n + 1)
        elif kind == "log_uniform":
            rank = torch.empty(n + 1)
            rank[torch.argsort(-freq[1:]) + 1] = torch.arange(n, dtype=torch.float)
            q = torch.log((rank + 2) / (rank + 1)) / math.log(n + 1)
        elif kind == "popularity":
            q = (freq + 1.0) ** 0.75  # +1 so that items never clicked in training can still be drawn
        elif kind == "full":
            q = torch.ones(n + 1)
        else:
            raise ValueError(f"unknown sampler {kind!r}: one of {', '.join(SAMPLERS)}")
        q[0] = 0.0
        q = q / q.sum()
        self.kind = kind
        self.register_buffer("q", q, persistent=False)

    def forward(self, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.multinomial(self.q, n, replacement=True)
        return idx, torch.log(self.q[idx])


class Tower(nn.Module):
    """What MIND and YouTubeDNN share: the embedding layer, the profile, the training loss."""

    cfg: MINDConfig

    def __init__(
        self,
        cfg: MINDConfig,
        n_items: int,
        item_categories: Tensor | None = None,
        n_categories: int = 0,
        profile_sizes: list[int] | None = None,
        seen: Tensor | None = None,
        item_freq: Tensor | None = None,
    ):
        super().__init__()
        if cfg.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {cfg.objective!r}: one of {', '.join(OBJECTIVES)}")
        self.cfg = cfg
        self.n_items = n_items
        if item_categories is None:
            item_categories = torch.zeros(n_items + 1, 1, dtype=torch.long)
        if seen is None:
            seen = torch.ones(n_items + 1, dtype=torch.bool)
        if item_freq is None:
            item_freq = torch.ones(n_items + 1)
        self.embedding = ItemEmbedding(n_items, n_categories, item_categories, seen, cfg.d, cfg.id_dropout,
                                       cfg.init_std)
        self.profile_sizes = list(profile_sizes or [])
        self.profile = ProfileEmbedding(self.profile_sizes, cfg.profile_dim)
        self.sampler = NegativeSampler(cfg.sampler, item_freq)

    # the exported interface -------------------------------------------------------------------
    def embedded_tower(self, e: Tensor, mask: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What user_tower.onnx computes, from behavior embeddings e [B, L, d] (rows of the pooled item
        embeddings; padding rows zero), mask [B, L] bool and profile [B, F]: interests [B, K, d], n_interests
        [B] and the coupling coefficients [B, L, K] (interpretability, `mindstream explain`). Embeddings, not
        indices, are the input so that the server can feed a vector the release was not trained on."""
        raise NotImplementedError

    def user_tower(self, items: Tensor, profile: Tensor) -> tuple[Tensor, Tensor]:
        """items [B, L] int64 (0 = padding), profile [B, F] int64 -> interests [B, K, d], n_interests [B]."""
        return self.embedded_tower(self.embedding(items), items > 0, profile)[:2]

    def forward(self, items: Tensor, profile: Tensor) -> tuple[Tensor, Tensor]:
        return self.user_tower(items, profile)

    def coupling(self, items: Tensor, profile: Tensor) -> Tensor:
        """Coupling coefficients [B, L, K] of the tower (rows of padding are 0)."""
        return self.embedded_tower(self.embedding(items), items > 0, profile)[2]

    def item_embeddings(self) -> Tensor:
        """Pooled item vectors [N+1, d] (row 0 = padding); frozen into item_embeddings.npy."""
        return self.embedding.all()

    def user_item_scores(self, interests: Tensor, n_int: Tensor, e_target: Tensor, E: Tensor) -> tuple[Tensor, Tensor]:
        """Training scores under `cfg.objective`: of each user's target [B] and of the shared items E [n, d], [B, n].

        label_aware (the paper): both are scored against v_u = label-aware attention over the interests,
        queried by the target. max / logsumexp: each item is scored by (a smooth) max over the valid interests.
        """
        if self.cfg.objective == "label_aware":
            v = label_aware_attention(interests, n_int, e_target, self.cfg.p)
            return (v * e_target).sum(-1), v @ E.T
        tau = self.cfg.tau if self.cfg.objective == "logsumexp" else 0.0
        valid = valid_interests(n_int, interests.shape[1])
        pos = max_over_interests(torch.einsum("bkd,bd->bk", interests, e_target), valid, tau)
        items = max_over_interests(torch.einsum("bkd,nd->bkn", interests, E), valid, tau)
        return pos, items

    def train_forward(self, items: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """user_tower plus the model's auxiliary loss, from one forward pass."""
        interests, n_int = self.user_tower(items, profile)
        return interests, n_int, interests.new_zeros(())

    def loss(self, items: Tensor, profile: Tensor, target: Tensor) -> Tensor:
        """Sampled (or full) softmax cross-entropy of the target, items scored by `user_item_scores`."""
        interests, n_int, aux = self.train_forward(items, profile)
        if self.cfg.repel > 0:
            aux = aux + self.cfg.repel * repel_penalty(interests, n_int)
        e_t = self.embedding(target)
        if self.cfg.sampler == "full":
            _, logits = self.user_item_scores(interests, n_int, e_t, self.item_embeddings())
            logits = logits.masked_fill(torch.arange(logits.shape[1], device=items.device) == 0, NEG)
            return F.cross_entropy(logits, target) + aux
        neg, log_q = self.sampler(self.cfg.n_neg)
        hit = neg.unsqueeze(0) == target.unsqueeze(1)  # accidental hits: a "negative" that is the target
        pos_score, neg_score = self.user_item_scores(interests, n_int, e_t, self.embedding(neg))  # [B], [B, n]
        pos_logit = (pos_score - torch.log(self.sampler.q[target])).unsqueeze(-1)
        neg_logit = (neg_score - log_q.unsqueeze(0)).masked_fill(hit, NEG)
        if self.cfg.hard_neg_beta > 0:
            # REMI's interest-aware hard negatives: importance-reweight the drawn negatives towards
            # q*(j) proportional to exp(beta * s_j), the ones the user vector already scores high.
            imp = torch.softmax((self.cfg.hard_neg_beta * neg_score.detach()).masked_fill(hit, NEG), dim=-1)
            neg_logit = neg_logit + torch.log((imp * neg_logit.shape[1]).clamp(min=1e-12))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        ce = F.cross_entropy(logits, torch.zeros_like(target))
        return ce + aux

    @torch.no_grad()
    def score_all(self, items: Tensor, profile: Tensor) -> Tensor:
        """Serving score of every item, max over valid interests of e_i . v_u^k; [B, N+1]."""
        interests, n_int = self.user_tower(items, profile)
        s = torch.einsum("bkd,nd->bkn", interests, self.item_embeddings())
        return max_over_interests(s, valid_interests(n_int, interests.shape[1]))


class MIND(Tower):
    """MIND: embedding & pooling -> B2I dynamic routing -> H-layer -> label-aware attention (training only)."""

    def __init__(self, cfg: MINDConfig, n_items: int, **vocab_tensors):
        super().__init__(cfg, n_items, **vocab_tensors)
        self.routing = B2IRouting(cfg.d, cfg.K, cfg.r, cfg.sigma, cfg.max_len, cfg.routing_seed, cfg.whole_history)
        self.h_layer = HLayer(cfg.d + self.profile.out_dim, cfg.hidden, cfg.d, cfg.dropout)

    def _capsules(self, e: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k_valid = interest_number(mask, self.cfg.K, self.cfg.dynamic_k)
        u, w = self.routing(e, mask, k_valid)
        return u, w, k_valid

    def train_forward(self, items: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mask = items > 0
        u, w, k_valid = self._capsules(self.embedding(items), mask)
        V = self._h(u, k_valid, profile)
        aux = self.cfg.routing_reg * routing_regularization(w, mask) if self.cfg.routing_reg > 0 else V.new_zeros(())
        return V, k_valid, aux

    def _h(self, u: Tensor, k_valid: Tensor, profile: Tensor) -> Tensor:
        p = self.profile(profile).unsqueeze(1).expand(-1, self.cfg.K, -1)
        V = self.h_layer(torch.cat([u, p], dim=-1))
        return V * valid_interests(k_valid, self.cfg.K).unsqueeze(-1)

    def embedded_tower(self, e: Tensor, mask: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # coupling: the w_ij of the last routing iteration
        u, w, k_valid = self._capsules(e, mask)
        return self._h(u, k_valid, profile), k_valid, w


class YouTubeDNN(Tower):
    """Covington et al. 2016: mean of behavior embeddings + profile -> ReLU layers -> ONE user vector.

    Exposes the MIND interface with K = 1 so evaluation and serving treat both alike.
    """

    def __init__(self, cfg: MINDConfig, n_items: int, **vocab_tensors):
        cfg = MINDConfig.from_dict({**cfg.to_dict(), "K": 1, "routing_reg": 0.0})
        super().__init__(cfg, n_items, **vocab_tensors)
        self.h_layer = HLayer(cfg.d + self.profile.out_dim, cfg.hidden, cfg.d, cfg.dropout)

    def embedded_tower(self, e: Tensor, mask: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # mean pooling as coupling: every behavior feeds the single vector with weight 1 / |Iu|
        m = mask.unsqueeze(-1).float()
        w = m / m.sum(1, keepdim=True).clamp(min=1.0)
        v = self.h_layer(torch.cat([(e * w).sum(1), self.profile(profile)], dim=-1))
        return v.unsqueeze(1), torch.ones(e.shape[0], dtype=torch.long, device=e.device), w
