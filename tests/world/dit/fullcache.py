"""A minimal unbudgeted cache for the model's own tests (the real one lives in `memory/`)."""

from __future__ import annotations

import torch

from reverie.kernels.view import KVSegment, KVView


class FullCache:
    """Keeps every committed frame; frame `i` of the session sits at temporal position `i`."""

    def __init__(self, spec):
        self.spec = spec
        self.k = [[] for _ in range(spec.layers)]
        self.v = [[] for _ in range(spec.layers)]
        self.frames = 0

    def _pos(self, n_tokens: int, start: int) -> torch.Tensor:
        per = self.spec.tokens_per_frame
        return torch.arange(start, start + n_tokens // per).repeat_interleave(per)

    def view(self, layer, q, k, v):
        scratch = KVSegment(k=k, v=v, pos=self._pos(k.shape[1], self.frames))
        segs = (scratch,)
        if self.k[layer]:
            ck, cv = torch.cat(self.k[layer], 1), torch.cat(self.v[layer], 1)
            segs = (KVSegment(k=ck, v=cv, pos=self._pos(ck.shape[1], 0)), scratch)
        return KVView(segments=segs, q_pos=self._pos(q.shape[1], self.frames), rope=self.spec.rope)

    def commit(self, layer, k, v, q):
        self.k[layer].append(k.clone())
        self.v[layer].append(v.clone())

    def begin_chunk(self, pose=None, events=()):
        pass

    def end_chunk(self):
        self.frames += self.spec.chunk_frames
