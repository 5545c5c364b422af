"""ANN-restricted attention over the recent ring (TempCache's AnnSA): an index over cached keys, LSH codes
of each slot (`LshIndex`) or a centroid of each frame (`CentroidIndex`, `PolicyConfig.ann_index`).

Each cached key's content channels (those after the temporal RoPE channels: what a key says, not when) are
hashed by sign random projections into `tables` codes of `bits` bits each, once, when the frame is
written. At a chunk's first view of a layer, its queries are hashed the same way, and each ring slot
counts the (head, table) pairs in which its code equals one of the queries' codes. The chunk attends to
the ring's newest `exact_frames` frames, the `frames` older frames whose slots match the most (whole
frames, a fixed number, so the cost is bounded and no host sync decides it), and every other segment
(sink, pools, retrieved frames, the chunk itself) in full; with `PolicyConfig.ann_rest_tokens` the frames it
leaves out are read as a few mean tokens each (`memory.ann_rest`). The candidate list is kept for the
chunk's later denoising steps (its view is built once per chunk), since a chunk's queries move little
between steps.

A sign projection keeps the angle between vectors (two vectors at angle `a` agree on a bit with
probability `1 - a / pi`), so keys pointing where a query points share its bucket most often: an
approximate nearest-neighbour search by angle, which for attention (a dot product, of keys of similar
norms) finds the keys that would get the most weight. More bits make buckets smaller (fewer candidates,
more misses); more tables catch more of the true neighbours.

The centroid index is the "quantized codes" kind: a frame's code is the mean of its content keys per head,
and a chunk's queries score each frame by the attention share the centroid predicts, a softmax over
frames, which follows attention that spreads over many frames better than a count of bucket matches.

`matches_ref` and `frame_scores_ref` are the brute-force torch references that the tests compare
`LshIndex.matches` and `CentroidIndex.frame_scores` against.
"""

from __future__ import annotations

from dataclasses import replace

import torch

#: bytes of one code (int32): what the budget pays per slot and table
ANN_CODE_BYTES = 4
#: bytes of one centroid channel (float32): what the budget pays per frame, head and content channel
CENTROID_BYTES = 4
#: the kinds of index over the recent ring (`PolicyConfig.ann_index`)
ANN_INDEXES = ("lsh", "centroid")
#: the largest code: the match table has `2 ** bits + 1` entries per head and table
MAX_BITS = 16


def content_from(spec) -> int:
    """The first channel an index hashes for a model with geometry `spec`: the one after the temporal
    RoPE channels (all of them when RoPE covers the whole head)."""
    return spec.rope.dims if spec.rope.dims < spec.head_dim else 0


class LshIndex:
    """Codes of one layer's ring slots: `codes` int32 `[H, tables, slots]`, `empty` (= `2 ** bits`, a
    bucket no query falls in) where nothing is coded.

    Args:
        heads, head_dim, slots: the ring's geometry.
        content_from: first channel hashed (the temporal RoPE channels before it are left out).
        bits, tables: code size and count.
        seed: the random projections (the same in every layer of a session: a pure function of the seed).
    """

    def __init__(self, *, heads: int, head_dim: int, slots: int, content_from: int, bits: int, tables: int,
                 device, seed: int = 0) -> None:
        if not 1 <= bits <= MAX_BITS or tables < 1:
            raise ValueError(f"LSH needs 1 <= bits <= {MAX_BITS} and tables >= 1, got {bits}, {tables}")
        if not 0 <= content_from < head_dim:
            raise ValueError(f"no content channels to hash: content_from={content_from}, head_dim={head_dim}")
        gen = torch.Generator().manual_seed(int(seed))
        self.planes = torch.randn(head_dim - content_from, tables * bits, generator=gen).to(device)
        self.weights = (2 ** torch.arange(bits, dtype=torch.int64)).to(device)
        self.content_from, self.bits, self.tables, self.heads = content_from, bits, tables, heads
        self.empty = 2 ** bits
        self.codes = torch.full((heads, tables, slots), self.empty, dtype=torch.int32, device=device)
        # bucket b of (head h, table t) is entry (h * tables + t) * (empty + 1) + b of the match table
        self._base = (torch.arange(heads * tables, device=device) * (self.empty + 1)).view(heads, tables, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """`[H, n, D]` keys or queries -> int64 codes `[H, tables, n]` (each in `[0, 2 ** bits)`)."""
        proj = x[..., self.content_from:].float() @ self.planes  # [H, n, tables * bits]
        signs = (proj > 0).view(*proj.shape[:-1], self.tables, self.bits).long()
        return (signs * self.weights).sum(-1).transpose(1, 2)

    def write(self, start: int, k: torch.Tensor) -> None:
        """Code keys `[H, n, D]` written to slots `start .. start + n`."""
        self.codes[:, :, start:start + k.shape[1]] = self.encode(k).to(torch.int32)

    def clear(self) -> None:
        self.codes.fill_(self.empty)

    @property
    def nbytes(self) -> int:
        return self.codes.numel() * self.codes.element_size()

    def frame_scores(self, q: torch.Tensor, rows: int, f: int) -> torch.Tensor:
        """float `[rows]`: per frame of `f` slots, the (head, table) matches of its slots with `q`."""
        return self.matches(q, rows * f).view(rows, f).sum(1).float()

    def matches(self, q: torch.Tensor, slots: int) -> torch.Tensor:
        """int64 `[slots]`: for each of the first `slots` slots, in how many (head, table) pairs its code
        equals the code of one of the queries `q` `[H, Nq, D]` of the same head (0: not a candidate). The
        queries' buckets are marked in one table of every (head, table, bucket); each slot looks its bucket
        up there: one gather over all slots, whatever the number of queries."""
        marks = torch.zeros(self.heads * self.tables * (self.empty + 1), dtype=torch.int8, device=q.device)
        marks[(self.encode(q) + self._base).flatten()] = 1
        looked = marks[(self.codes[:, :, :slots].long() + self._base).flatten()]
        return looked.view(self.heads * self.tables, slots).sum(0, dtype=torch.int64)


class CentroidIndex:
    """Each ring frame's mean content key per head, `centroids` float32 `[H, frames, D - content_from]`: a
    quantized code of the frame (the frame is its own cluster). A chunk's queries score every frame by the
    attention share its centroid predicts: per head and query, a softmax over the frames of
    `q . centroid / sqrt(D)` (the frame's tokens all scored as its mean), summed over heads and queries.
    A frame of similar keys gets the weight its tokens would; a frame whose keys spread is underrated.

    Args:
        heads, head_dim, frames: the ring's geometry (`frames` = its capacity in frames).
        tokens_per_frame: slots of one frame; writes start on a frame boundary.
        content_from: first channel kept (the temporal RoPE channels before it are left out).
    """

    def __init__(self, *, heads: int, head_dim: int, frames: int, tokens_per_frame: int, content_from: int,
                 device) -> None:
        if not 0 <= content_from < head_dim:
            raise ValueError(f"no content channels to index: content_from={content_from}, head_dim={head_dim}")
        self.f, self.content_from, self.scale = tokens_per_frame, content_from, head_dim ** -0.5
        self.centroids = torch.zeros(heads, frames, head_dim - content_from, device=device)

    def write(self, start: int, k: torch.Tensor) -> None:
        """Index keys `[H, n, D]` (whole frames) written to slots `start .. start + n`."""
        if start % self.f or k.shape[1] % self.f:
            raise ValueError(f"a centroid index is written whole frames of {self.f} slots, got slots "
                             f"{start}..{start + k.shape[1]}")
        row, n = start // self.f, k.shape[1] // self.f
        c = k[..., self.content_from:].float().reshape(k.shape[0], n, self.f, -1).mean(2)
        self.centroids[:, row:row + n] = c

    def clear(self) -> None:
        self.centroids.zero_()

    @property
    def nbytes(self) -> int:
        return self.centroids.numel() * self.centroids.element_size()

    def frame_scores(self, q: torch.Tensor, rows: int, f: int) -> torch.Tensor:
        """float `[rows]`: the attention share the first `rows` frames' centroids predict for `q` `[H, Nq, D]`."""
        logits = (q[..., self.content_from:].float() @ self.centroids[:, :rows].transpose(1, 2)) * self.scale
        return torch.softmax(logits, -1).sum((0, 1))


def frame_scores_ref(index: CentroidIndex, k: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`CentroidIndex.frame_scores` from the ring's keys `[H, rows * f, D]` themselves, frame by frame."""
    h, n, d = k.shape
    rows, out = n // index.f, torch.zeros(n // index.f)
    for hh in range(h):
        for i in range(q.shape[1]):
            logits = torch.stack([q[hh, i, index.content_from:] @ k[hh, r * index.f:(r + 1) * index.f,
                                                                     index.content_from:].mean(0)
                                  for r in range(rows)]) * index.scale
            out += torch.softmax(logits, 0)
    return out


def matches_ref(index: LshIndex, q: torch.Tensor, slots: int) -> torch.Tensor:
    """Brute force `LshIndex.matches`: every (head, table, slot, query) compared."""
    qc = index.encode(q)  # [H, T, Nq]
    kc = index.codes[:, :, :slots].long()  # [H, T, S]
    equal = kc[..., :, None] == qc[..., None, :]  # [H, T, S, Nq]
    return equal.any(-1).sum((0, 1))


def restrict_recent(store, segments: tuple, q: torch.Tensor, frames: int, exact_frames: int) -> tuple:
    """`segments` (a view's, the recent ring's last) with the ring's segment restricted to the index's
    candidates, whole frames at a time: its newest `exact_frames` frames, then the `frames` frames whose
    slots match the most (a fixed count: no host sync decides it). With frame means (`store.means`,
    `memory.ann_rest`) every other ring frame follows the ring's segment as its mean tokens. Unchanged
    while the ring holds no more than that."""
    ring, index = store.recent, store.ann
    f, used = ring.f, ring.slots_used
    rows = used // f
    keep = min(rows, frames + exact_frames)
    if not ring.frames or rows <= keep:
        return segments
    score = index.frame_scores(q, rows, f)
    for j in range(min(exact_frames, len(ring.frames))):
        score[ring.row(j)] = float("inf")
    if store.means is None:
        top = torch.topk(score, keep, sorted=False).indices
    else:  # every row ranked: the first `keep` attended in full, the rest as their means
        order = torch.argsort(score, descending=True)
        top, rest = order[:keep], order[keep:]
    slots = (top[:, None] * f + torch.arange(f, device=top.device)).flatten()
    recent = replace(segments[-1], index=slots)
    if store.means is None:
        return (*segments[:-1], recent)
    return (*segments[:-1], recent, store.means.segment(segments[-1].pos, rows, rest))
