"""Forcing-KV head groups: static heads see only the sink, the transition anchor frame and the chunk;
dynamic heads see everything the policy keeps.

Profiling: for each layer and head, from the attention the chunk's clean queries pay
to the cache, `ratio = (A_generate + A_transition) / (A_total - A_sink)`; a head is static when
`ratio > alpha` (0.8), where `A_generate` is the mass on the chunk itself, `A_transition` the mass on the
anchor (the newest cached frame), `A_sink` the mass on sink frames. Layer 0 is never compressed. The
decision is a deterministic function of the profiled attention; it runs online over the first
`profile_chunks` chunks whose cache holds `MIN_HISTORY_FRAMES` non-sink frames, or a full window (all heads
see everything meanwhile), or offline with
`profile_heads` and is loaded from JSON (`{"static": {"<layer>": [heads...]}}`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from reverie.kernels.attend import read_segment
from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.view import KVSegment, KVView

SAMPLES = 64
MIN_HISTORY_FRAMES = 4  # profile only once the cache holds this many frames besides the sink (or is full)


class HeadGroups:
    def __init__(self, spec, alpha: float, profile_chunks: int, device) -> None:
        self.spec, self.alpha, self.chunks = spec, alpha, profile_chunks
        self.device = torch.device(device)
        self.mass = torch.zeros(spec.layers, 4, spec.heads, device=self.device)  # generate, anchor, sink, total
        self.profiled = [0] * spec.layers
        self.static: torch.Tensor | None = None  # [layers, H] bool once decided

    @property
    def ready(self) -> bool:
        return self.static is not None

    def load(self, path: str | Path) -> None:
        data = json.loads(Path(path).read_text())
        static = torch.zeros(self.spec.layers, self.spec.heads, dtype=torch.bool)
        for layer, heads in data.get("static", {}).items():
            static[int(layer), list(heads)] = True
        self.static = static.to(self.device)

    def to_json(self) -> dict:
        if self.static is None:
            raise RuntimeError("head groups are not profiled yet")
        return {"alpha": self.alpha, "static": {str(l): [int(h) for h in torch.nonzero(row).flatten().tolist()]
                                               for l, row in enumerate(self.static.cpu())}}

    # ------------------------------------------------------------------ profiling
    def observe(self, layer: int, q: torch.Tensor, view: KVView, regions: list[str],
                anchor_slots: range | None) -> None:
        """Accumulate attention mass of `q` (subsampled) over `view` (cache segments named by `regions`,
        then the scratch chunk). Skipped until the cache holds an anchor frame."""
        if self.ready or anchor_slots is None:
            return
        n = q.shape[1]
        idx = torch.arange(0, n, max(n // SAMPLES, 1), device=q.device)[:SAMPLES]
        qr = apply_rope_ref(q.index_select(1, idx).float(), view.q_pos.index_select(0, idx), view.rope)
        masses = [self._segment_logits(qr, seg, view) for seg in view.segments]
        lse = torch.logsumexp(torch.cat(masses, -1), -1, keepdim=True)
        per = [(m - lse).exp().sum(1) for m in masses]  # each [H, S]
        gen = per[-1].sum(-1)
        total = sum(p.sum(-1) for p in per)
        sink = torch.zeros_like(gen)
        for p, r in zip(per, regions):
            if r == "sink":
                sink = sink + p.sum(-1)
        anchor = per[regions.index("recent")][:, anchor_slots.start:anchor_slots.stop].sum(-1)
        self.mass[layer] += torch.stack((gen, anchor, sink, total))
        self.profiled[layer] += 1
        if min(self.profiled) >= self.chunks:
            self.decide()

    def _segment_logits(self, qr, seg: KVSegment, view: KVView) -> torch.Tensor:
        k, _ = read_segment(seg, torch.float32)
        pos = seg.pos if seg.index is None else seg.pos.index_select(0, seg.index)
        kr = apply_rope_ref(k, pos, view.rope)
        logits = torch.einsum("hqd,hsd->hqs", qr, kr) / math.sqrt(qr.shape[-1])
        if seg.bias is not None:
            b = seg.bias if seg.index is None else seg.bias.index_select(-1, seg.index)
            logits = logits + (b[:, None, :] if b.ndim == 2 else b[None, None, :])
        return logits

    def decide(self) -> None:
        gen, anchor, sink, total = self.mass.unbind(1)
        ratio = (gen + anchor) / (total - sink).clamp_min(1e-12)
        static = ratio > self.alpha
        static[0] = False  # layer 0 is never compressed
        self.static = static

    # ------------------------------------------------------------------ masking
    def hide(self, layer: int, seg: KVSegment, region: str, keep: range | None = None) -> KVSegment:
        """`seg` with static heads' logits at `-inf` on every slot outside `keep` (sink: unchanged)."""
        if not self.ready or region == "sink":
            return seg
        s = seg.pos.shape[0]
        static = self.static[layer]
        mask = torch.zeros(self.spec.heads, s, device=seg.pos.device)
        hidden = torch.ones(s, dtype=torch.bool, device=seg.pos.device)
        if keep is not None:
            hidden[keep.start:keep.stop] = False
        mask.masked_fill_(static[:, None] & hidden[None, :], -math.inf)
        bias = mask if seg.bias is None else mask + (seg.bias if seg.bias.ndim == 2 else seg.bias[None, :])
        return KVSegment(k=seg.k, v=seg.v, pos=seg.pos, index=seg.index, bias=bias, k_scale=seg.k_scale,
                         k_zero=seg.k_zero, v_scale=seg.v_scale, v_zero=seg.v_zero, bits=seg.bits, group=seg.group)

    def reset(self) -> None:
        """Head groups are a property of the model: they survive a session reset."""
