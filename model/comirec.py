"""ComiRec-SA (Cen et al., "Controllable Multi-Interest Framework for Recommendation", KDD 2020), Section 3.2.

The self-attentive multi-interest extractor, the comparator `mindstream eval` trains beside MIND:

    A   = softmax over behaviors of  W2 tanh(W1 (E + P))      [B, L, K]   (padding masked)
    V_u = A^T E                                               [B, K, d]

E are the behavior embeddings (the shared embedding & pooling layer of model/mind.py), P learned
position embeddings aligned to the most recent behavior, W1 a d -> 4d layer and W2 one attention head
per interest, as in the authors' code (which also leaves P out of the interests themselves). The paper
uses a fixed number of interests K and no user profile; training and serving go through the same
`Tower` as MIND, so both are trained with the same loss, budget and selection rule.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.mind import NEG, MINDConfig, Tower


class ComiRecSA(Tower):
    def __init__(self, cfg: MINDConfig, n_items: int, **vocab_tensors):
        super().__init__(cfg, n_items, **vocab_tensors)
        self.position = nn.Parameter(torch.randn(cfg.max_len, cfg.d) * cfg.d**-0.5)
        self.W1 = nn.Linear(cfg.d, 4 * cfg.d)
        self.W2 = nn.Linear(4 * cfg.d, cfg.K, bias=False)

    def embedded_tower(self, e: Tensor, mask: Tensor, profile: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # coupling: each interest's attention over the behaviors (sums to 1 over the real ones)
        h = e + self.position[self.position.shape[0] - e.shape[1] :]
        logits = self.W2(torch.tanh(self.W1(h)))  # [B, L, K]
        m = mask.unsqueeze(-1)
        a = torch.softmax(logits.masked_fill(~m, NEG), dim=1) * m
        interests = torch.einsum("blk,bld->bkd", a, e)
        return interests, torch.full(e.shape[:1], self.cfg.K, dtype=torch.long, device=e.device), a
