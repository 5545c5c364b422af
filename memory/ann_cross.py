"""ANN-restricted cross-attention to a prompt (TempCache's AnnCA), with the full attention beside it.

A model that cross-attends to a fixed set of conditioning tokens (an image or text prompt: the same for
every frame of a session) pays `N_q x N_p` for it at every layer and denoising step. AnnCA reads, for each
query, only the prompt tokens an approximate-nearest-neighbour index finds for it. The index here is the
"quantized codes" kind (an inverted file): when a prompt is first seen, each head's prompt keys are
clustered by k-means (`iters` Lloyd steps from a seeded draw of keys, about `cluster_size` keys a cluster),
and each key's code is its cluster. A query scores the centroids (`N_q x N_p / cluster_size`), takes its
`probes` best clusters and attends to their members (at most `2 x cluster_size` each, a fixed count: no
host sync decides it), so a call costs about `1 / cluster_size` of the full one plus the gathered tokens.
(Sign-projection LSH, which the recent cache's AnnSA uses, found too few of a query's true neighbours
here: its buckets are built blind to where the keys lie, and a prompt is indexed once, so k-means pays.)

`PromptAttention` is what a model holds per (prompt, layer); `cross_attention_ref` is the full attention
the tests and `reverie bench cross` compare it with. `record_calls` lets the bench see every call a model
makes (the full attention is then computed beside the restricted one, and both are timed), without the
model knowing about the bench.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F



@dataclass(frozen=True)
class CrossAnnConfig:
    """AnnCA's knobs: clusters of about `cluster_size` prompt keys (k-means, `iters` steps, seeded), and
    each query reads the members of its `probes` best clusters (at most `2 x cluster_size` from each)."""

    probes: int = 4
    cluster_size: int = 8
    iters: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.probes < 1 or self.cluster_size < 1 or self.iters < 0:
            raise ValueError(f"AnnCA needs probes >= 1, cluster_size >= 1 and iters >= 0, got "
                             f"{self.probes}, {self.cluster_size}, {self.iters}")

    @property
    def per_cluster(self) -> int:
        """The most members a query reads from one cluster."""
        return 2 * self.cluster_size

    @property
    def tokens(self) -> int:
        """The most prompt tokens a query reads."""
        return self.probes * self.per_cluster

    def clusters_for(self, prompt_tokens: int) -> int:
        return max(1, -(-prompt_tokens // self.cluster_size))

    def restricts(self, prompt_tokens: int) -> bool:
        """Whether a prompt this long is restricted at all (a query may read every token of a short one)."""
        return self.tokens < prompt_tokens and self.probes < self.clusters_for(prompt_tokens)


def prompt_index_bytes(heads: int, head_dim: int, prompt_tokens: int, ann: CrossAnnConfig | None,
                       element_size: int = 4) -> int:
    """Bytes `PromptAttention` keeps per layer for its index (keys and values of `element_size` bytes): per
    head the float32 centroids and their empty-cluster mask, each cluster's members (int64, padded to
    `per_cluster`), its keys and values copied into one padded block, and the padding's bias and mask.
    0 without AnnCA or when nothing is restricted."""
    if ann is None or not ann.restricts(prompt_tokens):
        return 0
    c, m = ann.clusters_for(prompt_tokens), ann.per_cluster
    return heads * c * (head_dim * 4 + 4 + m * (8 + 2 * head_dim * element_size + element_size + 1))


def kmeans(x: torch.Tensor, clusters: int, iters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, Lloyd's k-means of `x` `[H, N, D]`: centroids `[H, c, D]` and each row's cluster `[H, N]`.
    Starts from `clusters` distinct rows drawn with `seed`; an emptied cluster keeps its last centroid."""
    h, n, d = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    start = torch.stack([torch.randperm(n, generator=gen)[:clusters] for _ in range(h)]).to(x.device)
    centroids = x.gather(1, start[..., None].expand(-1, -1, d)).clone()
    assign = torch.zeros(h, n, dtype=torch.int64, device=x.device)
    for step in range(iters + 1):
        assign = torch.cdist(x, centroids).argmin(-1)
        if step == iters:
            break
        sums = torch.zeros_like(centroids).scatter_add_(1, assign[..., None].expand(-1, -1, d), x)
        counts = torch.zeros(h, clusters, device=x.device).scatter_add_(1, assign, torch.ones(h, n, device=x.device))
        centroids = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], centroids)
    return centroids, assign


def cross_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full cross-attention: queries `[H, Nq, D]` over every prompt token `[H, Np, D]`."""
    return F.scaled_dot_product_attention(q, k, v)


@dataclass
class CrossCalls:
    """What `record_calls` gathers: per call, the restricted output's relative error against the full
    attention, the share of the full attention's weight on the tokens it read (`mass`), how many tokens a
    query read on average and of how many, and both times (ms)."""

    rel_err: list[float] = field(default_factory=list)
    mass: list[float] = field(default_factory=list)
    tokens_read: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    ms_ann: list[float] = field(default_factory=list)
    ms_full: list[float] = field(default_factory=list)


_RECORDING: contextvars.ContextVar[CrossCalls | None] = contextvars.ContextVar("cross_calls", default=None)


@contextlib.contextmanager
def record_calls():
    """Within the block, every `PromptAttention` call is also run in full and measured (`CrossCalls`)."""
    calls = CrossCalls()
    token = _RECORDING.set(calls)
    try:
        yield calls
    finally:
        _RECORDING.reset(token)


class PromptAttention:
    """One layer's cross-attention to one prompt: its keys and values `[H, Np, D]`, and with a config
    (`ann`) its index, built once here: per head the centroids of its keys and each cluster's members, with
    their keys and values copied into one padded block per cluster (a query then reads whole blocks, not
    scattered rows: on the CPU that is what makes the restriction pay). `ann=None` is the full attention."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, ann: CrossAnnConfig | None = None) -> None:
        if k.dim() != 3 or v.dim() != 3 or k.shape[:2] != v.shape[:2]:
            raise ValueError(f"prompt keys and values must be [H, Np, D] alike, got {tuple(k.shape)}, {tuple(v.shape)}")
        self.k, self.v, self.ann = k, v, ann
        self.centroids = None
        h, n, d = k.shape
        if ann is not None and ann.restricts(n):
            c, m = ann.clusters_for(n), ann.per_cluster
            self.centroids, assign = kmeans(k.float(), c, ann.iters, ann.seed)
            order = torch.argsort(assign, dim=1, stable=True)  # [H, Np]: members, cluster by cluster
            counts = torch.zeros(h, c, dtype=torch.int64, device=k.device).scatter_add_(1, assign, torch.ones_like(assign))
            starts = F.pad(counts.cumsum(1), (1, 0))  # [H, c + 1]
            at = starts[:, :-1, None] + torch.arange(m, device=k.device)  # [H, c, m]
            self.members = order.gather(1, at.clamp_max(n - 1).reshape(h, -1)).view(h, c, m)
            valid = at < starts[:, 1:, None]
            self.unused = torch.where(counts > 0, 0.0, float("-inf"))[:, None, :]  # emptied clusters: never probed
            # each cluster's keys and values as one padded block, so a query's reads are whole blocks
            rows = self.members.reshape(h, -1, 1).expand(-1, -1, d)
            self.key_blocks = k.gather(1, rows).reshape(h * c, m * d)
            self.value_blocks = v.gather(1, rows).reshape(h * c, m * v.shape[-1])
            self.block_bias = torch.where(valid, 0.0, float("-inf")).reshape(h * c, m).to(k.dtype)
            self.block_valid = valid.reshape(h * c, m)

    @property
    def index_bytes(self) -> int:
        """Bytes of the prompt's index (0 for the full attention)."""
        if self.centroids is None:
            return 0
        held = (self.centroids, self.members, self.unused, self.key_blocks, self.value_blocks, self.block_bias,
                self.block_valid)
        return sum(t.numel() * t.element_size() for t in held)

    def probed(self, q: torch.Tensor) -> torch.Tensor:
        """Per query `[H, Nq, D]`, its `probes` best clusters by `q . centroid`, as rows of the blocks
        `[H, Nq, P]` (head-major: head `h`'s cluster `j` is row `h * clusters + j`)."""
        h, c = self.centroids.shape[:2]
        best = torch.topk(q.float() @ self.centroids.transpose(1, 2) + self.unused, self.ann.probes, dim=-1).indices
        return best + torch.arange(h, device=q.device)[:, None, None] * c

    def candidates(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query `[H, Nq, D]`, the members of its `probes` best clusters, at most `per_cluster` of each:
        int64 `[H, Nq, C]` prompt-token indices and a bool `[H, Nq, C]` mask of the valid ones
        (C = `ann.tokens`; clusters are disjoint, so no token comes twice)."""
        rows = self.probed(q)
        h, nq = rows.shape[:2]
        idx = self.members.reshape(-1, self.ann.per_cluster)[rows].reshape(h, nq, -1)
        return idx, self.block_valid[rows].reshape(h, nq, -1)

    def reads(self, q: torch.Tensor) -> tuple[float, float]:
        """For queries `[H, Nq, D]`: the mean over queries of the full attention's weight on the tokens the
        restricted one reads (how much of what a query looks at its index finds), and the mean count of
        those tokens. (1, Np) when nothing is restricted."""
        if self.centroids is None:
            return 1.0, float(self.k.shape[1])
        weights = torch.softmax((q.float() @ self.k.float().transpose(1, 2)) * q.shape[-1] ** -0.5, -1)
        idx, valid = self.candidates(q)
        return float((weights.gather(-1, idx) * valid).sum(-1).mean()), float(valid.sum(-1).float().mean())

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        calls = _RECORDING.get()
        start = time.perf_counter()
        out = self._attend(q)
        if calls is not None:
            self._record(calls, q, out, (time.perf_counter() - start) * 1e3)
        return out

    def _attend(self, q: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            return cross_attention_ref(q, self.k, self.v)
        rows = self.probed(q).flatten()
        h, nq, d = q.shape
        k = self.key_blocks.index_select(0, rows).view(h, nq, -1, d)  # [H, Nq, C, D]: whole blocks
        v = self.value_blocks.index_select(0, rows).view(h, nq, k.shape[2], -1)
        bias = self.block_bias.index_select(0, rows).view(h, nq, -1)  # padding: -inf
        logits = torch.einsum("hqd,hqcd->hqc", q, k) * d ** -0.5 + bias
        return torch.einsum("hqc,hqcd->hqd", torch.softmax(logits, -1), v)  # the best cluster has members

    def _record(self, calls: CrossCalls, q: torch.Tensor, out: torch.Tensor, ms: float) -> None:
        start = time.perf_counter()
        full = cross_attention_ref(q, self.k, self.v)
        calls.ms_full.append((time.perf_counter() - start) * 1e3)
        calls.ms_ann.append(ms)
        calls.rel_err.append(float((out - full).norm() / full.norm().clamp_min(1e-12)))
        mass, read = self.reads(q)
        calls.mass.append(mass)
        calls.tokens_read.append(read)
        calls.prompt_tokens.append(self.k.shape[1])
