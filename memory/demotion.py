"""What happens to frames leaving the recent window: archive them for retrieval, score them, let them
compete for the mid pool (merging into their temporal correspondent first, when the policy merges), and
pass what the mid pool evicts to the low-bit spill tier.

`Demotion` is composed by `memory.manager.MemoryManager` from the policy's parts (scorer, merger,
archive, stacked pools); any of them may be absent.
"""

from __future__ import annotations

import torch

from reverie.memory.tokens import Tokens


class Demotion:
    """Demotes the frames a commit pushed out of `recent`: one layer at a time (`layer`), or every layer
    in one batch after the last layer's commit (`all_layers`: stacked mid pools, or no mid pool)."""

    def __init__(self, tokens_per_frame: int, scorer, merger, archive, stack, timer) -> None:
        self.f = tokens_per_frame
        self.scorer, self.merger, self.archive, self.stack, self.timer = scorer, merger, archive, stack, timer

    def layer(self, layer: int, store, tokens: Tokens, frames: list[int]) -> None:
        """`tokens` (`[H, n, D]`, metadata `[n]`): the rows of `frames` leaving `store.recent`."""
        if self.archive is not None:
            with self.timer("archive"):
                self.archive.put(layer, frames, tokens.k, tokens.v)
        if store.mid is None:
            return
        with self.timer("score"):
            tokens = tokens._replace(score=self.scorer.score(layer, tokens, store), count=torch.ones_like(tokens.score))
        f = self.f
        for i, frame in enumerate(frames):  # one frame at a time so merges see the previous frame
            part = Tokens(*(t[:, i * f:(i + 1) * f] if t.ndim == 3 else t[i * f:(i + 1) * f] for t in tokens))
            merged = None
            if self.merger is not None:
                with self.timer("merge"):
                    part, merged = self.merger.merge(layer, store.mid, part)
            with self.timer("compact_mid"):
                evicted = store.mid.add(part, frame, want_evicted=store.spill is not None)
            if merged is not None:
                self.merger.after_add(layer, store.mid, part, merged)
            if evicted is not None:
                with self.timer("compact_spill"):
                    store.spill.add(evicted, store.mid.min_frame)

    def all_layers(self, stores, staged: Tokens, frames: list[int]) -> None:
        """Every layer at once: `staged` (`[L, H, >= n, D]`, metadata `[L, >= n]`) holds the rows of
        `frames` (the same frames in every layer) first."""
        if frames:
            m = len(frames) * self.f
            tokens = Tokens(*(t[:, :, :m] if t.ndim == 4 else t[:, :m] for t in staged))
            if self.archive is not None:
                with self.timer("archive"):
                    self.archive.put_layers(frames, tokens.k, tokens.v)
            if self.stack is not None:
                with self.timer("score"):
                    tokens = tokens._replace(score=self.scorer.score_all(tokens, stores, self.stack))
                with self.timer("compact_mid"):
                    self.stack.add(tokens, frames[0])
        if self.stack is not None:
            with self.timer("score"):
                self.scorer.rescore_all(stores, self.stack)
