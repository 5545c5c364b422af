"""`Tokens`: a batch of cached tokens in full precision, as they move from one memory region to another
(the frames leaving `recent`, arrivals and evictions of a token pool)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Tokens(NamedTuple):
    """A batch of cached tokens in full precision moving between regions.

    k, v: `[H, n, D]` pre-RoPE keys and values. frame: `[n]` int64 absolute frame. hw: `[n]` int64 index
    inside the frame. score: `[n]` float32 policy score (higher = keep). count: `[n]` float32 multiplicity
    (merged tokens; `-inf` scores mark empty entries).
    """

    k: torch.Tensor
    v: torch.Tensor
    frame: torch.Tensor
    hw: torch.Tensor
    score: torch.Tensor
    count: torch.Tensor
