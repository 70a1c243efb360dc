"""The two reward components of one RL group: plain functions, no state.

Paper: fidelity from the answer's cross-entropy against the uncompressed baseline,
    dCE_k = CE_k - CE_base,      f_k = -dCE_k
and sparsity from the mask,
    s_k = 1 - keep_fraction(m^(k)) = 1 - (1/(T N)) sum_{t,i} m^(k)_{t,i}.
"""

from __future__ import annotations

from torch import Tensor


def fidelity_reward(ce: Tensor, ce_base: Tensor) -> Tensor:
    """f = -(CE_k - CE_base). ce [B, K], ce_base [B] -> [B, K]."""
    return -(ce - ce_base.unsqueeze(-1))


def sparsity_reward(masks: Tensor) -> Tensor:
    """s = 1 - keep fraction. masks [B, K, L] bool -> [B, K]."""
    return 1.0 - masks.float().mean(dim=-1)
