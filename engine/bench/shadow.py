"""Shadow mode of `reverie bench memory`: one memory drives the model, every policy watches the same queries.

`ShadowMemory` has the memory API, so a `Session` runs on it like on any memory (`memory_factory`). The
`full` reference answers every `view` (its output drives the model) and receives every commit; each
policy's memory is fed the same clean chunks and, at every layer and denoising step, attends with the same
queries: `err[key]` accumulates `||O_policy - O_full|| / ||O_full||`, `mass[key]` the full-cache softmax
mass (sampled queries, all heads) on the tokens the policy still shows that head (a merged slot counts as
its newest member only; quantized tokens count as kept; slots an index leaves out count as dropped, also
where `ann_rest_tokens` attends their frame's means).
"""

from __future__ import annotations

import math


class ShadowMemory:
    """Drives the model with the `full` reference and measures every policy on the same queries."""

    def __init__(self, full, policies: dict, samples: int) -> None:
        self.full, self.policies, self.samples = full, policies, samples
        self.err = {key: [0.0, 0] for key in policies}
        self.mass = {key: [0.0, 0] for key in policies}

    def begin_chunk(self, pose=None, events=()):
        for m in (self.full, *self.policies.values()):
            m.begin_chunk(pose=pose, events=events)

    def end_chunk(self):
        for m in (self.full, *self.policies.values()):
            m.end_chunk()

    def view(self, layer, q, k, v):
        from reverie.kernels import attend

        fv = self.full.view(layer, q, k, v)
        ref = attend(q, fv).float()
        probs, full_ids = self._full_probs(layer, q, fv)
        for key, mem in self.policies.items():
            pv = mem.view(layer, q, k, v)
            out = attend(q, pv).float()
            e = self.err[key]
            e[0] += float((out - ref).norm() / ref.norm().clamp_min(1e-12))
            e[1] += 1
            m = self.mass[key]
            m[0] += float(_retained(probs, full_ids, mem.slot_tokens(layer), pv))
            m[1] += 1
        return fv

    def commit(self, layer, k, v, q):
        for m in (self.full, *self.policies.values()):
            m.commit(layer, k, v, q)

    def _full_probs(self, layer, q, view):
        import torch

        from reverie.kernels.attend import read_segment
        from reverie.kernels.rope import apply_rope_ref

        n = q.shape[1]
        idx = torch.arange(0, n, max(n // self.samples, 1), device=q.device)[: self.samples]
        qr = apply_rope_ref(q.index_select(1, idx).float(), view.q_pos.index_select(0, idx), view.rope)
        keys = [apply_rope_ref(read_segment(s, torch.float32)[0], s.pos, view.rope) for s in view.segments]
        logits = torch.einsum("hqd,hsd->hqs", qr, torch.cat(keys, 1)) / math.sqrt(q.shape[-1])
        e = (logits - logits.amax(-1, keepdim=True)).exp()
        return e / e.sum(-1, keepdim=True), self.full.slot_tokens(layer)


def _retained(probs, full_ids, pol_ids, pol_view):
    """Mean over heads and sampled queries of the full-cache probability on slots the policy shows."""
    import torch

    h = probs.shape[0]
    cached = full_ids.shape[0]
    visible = torch.ones(h, pol_ids.shape[0], dtype=torch.bool, device=probs.device)
    start = 0
    for seg in pol_view.segments[:-1]:
        s = seg.pos.shape[0]
        if start + s > pol_ids.shape[0]:  # frames attended as their means (`ann_rest_tokens`): no slot of their own
            break
        shown = (torch.ones(h, s, dtype=torch.bool, device=probs.device) if seg.bias is None else
                 torch.isfinite(seg.bias if seg.bias.ndim == 2 else seg.bias[None].expand(h, s)))
        if seg.index is not None:  # only the gathered slots are attended (`ann`)
            picked = torch.zeros_like(shown)
            picked[:, seg.index] = shown[:, seg.index]
            shown = picked
        visible[:, start:start + s] = shown
        start += s
    kept = torch.stack([torch.isin(full_ids, pol_ids[visible[i] & (pol_ids >= 0)]) for i in range(h)])
    mass = (probs[:, :, :cached] * kept[:, None, :]).sum(-1) + probs[:, :, cached:].sum(-1)
    return mass.mean()
