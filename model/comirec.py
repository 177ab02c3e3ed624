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

    def coupling(self, items: Tensor, profile: Tensor) -> Tensor:
        """Attention of each interest over the behaviors, [B, L, K] (columns sum to 1 over real behaviors)."""
        mask = (items > 0).unsqueeze(-1)
        h = self.embedding(items) + self.position[self.position.shape[0] - items.shape[1] :]
        logits = self.W2(torch.tanh(self.W1(h)))
        return torch.softmax(logits.masked_fill(~mask, NEG), dim=1) * mask

    def user_tower(self, items: Tensor, profile: Tensor) -> tuple[Tensor, Tensor]:
        a = self.coupling(items, profile)
        interests = torch.einsum("blk,bld->bkd", a, self.embedding(items))
        return interests, torch.full(items.shape[:1], self.cfg.K, dtype=torch.long, device=items.device)
