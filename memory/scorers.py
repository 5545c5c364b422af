"""Scorers: how tokens competing for the mid pool are ranked (higher score = keep).

One small strategy object per method, chosen by name from `SCORERS` (no if-chains). A scorer sees the
tokens leaving the recent window when they enter a pool (`score`), may refresh the scores of what a pool
already holds after each commit (`rescore`, e.g. accumulated attention), and gets the commit pass's clean
queries (`observe`). All of it is tensor code at commit time: no host syncs.
"""

from __future__ import annotations

import torch

from memory.regions import Tokens


class Scorer:
    """Base scorer: recency (newer frames score higher), i.e. FIFO eviction."""

    needs_queries = False

    def __init__(self, cfg, spec, device) -> None:
        self.cfg, self.spec, self.device = cfg, spec, device

    def observe(self, layer: int, q: torch.Tensor) -> None:
        """Clean queries `[H, n, D]` of the chunk just committed at `layer`."""

    def score(self, layer: int, tokens: Tokens) -> torch.Tensor:
        """`[n]` float32 scores for tokens entering a pool."""
        return tokens.frame.to(torch.float32)

    def rescore(self, layer: int, pool) -> None:
        """Update `pool.score[:pool.used]` in place (default: scores are fixed once given)."""

    def reset(self) -> None:
        """Forget per-session state."""


SCORERS: dict[str, type[Scorer]] = {"recency": Scorer}


def register_scorer(name: str, cls: type[Scorer]) -> None:
    SCORERS[name] = cls


def make_scorer(name: str, cfg, spec, device) -> Scorer:
    try:
        return SCORERS[name](cfg, spec, device)
    except KeyError:
        raise ValueError(f"unknown scorer '{name}'; available: {', '.join(SCORERS)}") from None
