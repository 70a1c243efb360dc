"""Surprise-augmented state: pure functions, no parameters.

Paper (SCORE, arXiv 2603.26365, method figure): with projector output X in R^{T x N x D},

    dX_t = X_t - X_{t-1}        (same spatial position; "frame difference")
    dX_1 = X_1                  (the figure draws the first temporal unit in full)
    h_{t,i} = [LN(x_{t,i}); LN(dx_{t,i})]  in R^{2D}

LN is a layer norm without affine parameters (the policy's first layer supplies the scale), so the
state is a fixed function of the frozen features and can be cached with them. For Qwen2/2.5-VL a
temporal unit is one temporal patch (2 frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def temporal_residual(x: Tensor) -> Tensor:
    """dX over the temporal axis. x: [..., T, N, D] -> [..., T, N, D], with dX_1 = X_1."""
    dx = torch.empty_like(x)
    dx[..., :1, :, :] = x[..., :1, :, :]
    dx[..., 1:, :, :] = x[..., 1:, :, :] - x[..., :-1, :, :]
    return dx


def surprise_state(x: Tensor, eps: float = 1e-5) -> Tensor:
    """h = [LN(x); LN(dx)]. x: [..., T, N, D] -> [..., T, N, 2D] (float32 for a stable policy)."""
    x = x.float()
    d = x.shape[-1]
    return torch.cat([F.layer_norm(x, (d,), eps=eps), F.layer_norm(temporal_residual(x), (d,), eps=eps)], dim=-1)


def surprise_norm(x: Tensor) -> Tensor:
    """||dX_{t,i}||_2. x: [..., T, N, D] -> [..., T, N] (the training-free `surprise` baseline's score)."""
    return temporal_residual(x.float()).norm(dim=-1)
