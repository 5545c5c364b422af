"""PaFu-KV's learned salience head (S-MLP) and the SSE targets it is distilled from.

Targets (Spatiotemporal-balanced Salience Estimation, PaFu-KV): for a key `j` in chunk `b(j)` and
attention probabilities `P[h, i, j]` of queries `i`,

    s_low(j)  = mean_h max_{i in a later chunk}  P[h, i, j]     (how much the future uses j)
    s_diag(j) = mean_h max_{i in the same chunk} P[h, i, j]     (how much its own chunk uses j)
    target(j) = w_low * s_low(j) / mean(s_low) + w_diag * s_diag(j) / mean(s_diag)

Each component is normalised by its mean over keys so the diagonal term (attention concentrated inside
the chunk) does not swamp long-range use. The teacher is the model itself run with the full cache, so the
"future" term is the attention later frames actually pay; `s_up` of the paper is zero for a causal model
and omitted. (The paper's combination rule is not public; this is the reconstruction used here,
as PaFu-KV describes the targets.)

The head: per layer, an MLP on the token's key (all heads flattened, RMS-normalised) -> one scalar.
Weights are safetensors with metadata naming the model geometry; `load_salience_head` refuses a file made
for another geometry with a clear error.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from reverie.memory.scorers import softmax

WEIGHTS_DIR = Path(__file__).parent / "weights"
HIDDEN = 64


def default_weights_path(model_name: str) -> Path:
    """Where the bundled salience head of a registered model lives (`memory/weights/salience-<name>`)."""
    return WEIGHTS_DIR / f"salience-{model_name}.safetensors"


class SalienceHead(nn.Module):
    """`layers` small MLPs: key `[H, n, D]` -> salience `[n]` (higher = keep)."""

    def __init__(self, layers: int, heads: int, head_dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.geometry = {"layers": layers, "heads": heads, "head_dim": head_dim, "hidden": hidden}
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(heads * head_dim, hidden), nn.GELU(), nn.Linear(hidden, 1)) for _ in range(layers))
        self._stacked: tuple[torch.Tensor, ...] | None = None  # predict_all's weights, built on first use

    @staticmethod
    def features(k: torch.Tensor) -> torch.Tensor:
        """`[H, n, D]` keys -> `[n, H * D]` RMS-normalised float32 features."""
        x = k.float().permute(1, 0, 2).reshape(k.shape[1], -1)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def forward(self, layer: int, k: torch.Tensor) -> torch.Tensor:
        return self.mlps[layer](self.features(k))[:, 0]

    @torch.no_grad()
    def predict(self, layer: int, k: torch.Tensor) -> torch.Tensor:
        return self.forward(layer, k)

    @torch.no_grad()
    def predict_all(self, k: torch.Tensor) -> torch.Tensor:
        """Every layer at once: keys `[L, H, n, D]` -> `[L, n]` (two batched matmuls instead of L MLP calls;
        the stacked weights are built on first use, so call it only on a head that is no longer trained)."""
        if self._stacked is None:
            first = [m[0] for m in self.mlps]
            last = [m[2] for m in self.mlps]
            self._stacked = (torch.stack([m.weight.t() for m in first]), torch.stack([m.bias[None] for m in first]),
                             torch.stack([m.weight.t() for m in last]), torch.stack([m.bias[None] for m in last]))
        w1, b1, w2, b2 = self._stacked
        layers, heads, n, d = k.shape
        x = k.float().permute(0, 2, 1, 3).reshape(layers, n, heads * d)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return torch.baddbmm(b2, torch.nn.functional.gelu(torch.baddbmm(b1, x, w1)), w2)[..., 0]

    def save(self, path: str | Path, model_name: str, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        meta = {"model": model_name, "geometry": json.dumps(self.geometry)}
        meta.update({k: str(v) for k, v in (extra or {}).items()})
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path), metadata=meta)


def load_salience_head(spec, path: str | Path | None, device) -> SalienceHead | None:
    """The trained head for `spec` from `path`, or from the bundled file for `spec.name` when `path` is
    None; None when there is none (the caller falls back to the attention proxy). A bundled file made for
    another geometry (e.g. a differently sized model of the same name) is ignored with a warning.

    Raises:
        ValueError: an explicitly given file is missing, unreadable or made for another geometry.
    """
    return _or_bundled(spec, path, lambda p: _load(spec, p, device))


def salience_geometry(spec, path: str | Path | None) -> dict | None:
    """The geometry (`layers`, `heads`, `head_dim`, `hidden`) of the head `load_salience_head(spec, path)`
    loads, from the file's metadata alone (nothing is loaded); None when there is no head. Same rules and
    errors as `load_salience_head`."""
    return _or_bundled(spec, path, lambda p: _geometry(spec, p))


def _or_bundled(spec, path, read):
    """`read(path)`; for `path` None, `read` of the bundled file if there is one, a misfit ignored with a
    warning."""
    if path is not None:
        return read(Path(path))
    bundled = default_weights_path(spec.name)
    if not bundled.is_file():
        return None
    try:
        return read(bundled)
    except ValueError as exc:
        warnings.warn(f"ignoring the bundled salience head: {exc}", stacklevel=3)
        return None


def _geometry(spec, p: Path) -> dict:
    if not p.is_file():
        raise ValueError(f"salience weights {p} do not exist")
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
        geometry = json.loads(meta["geometry"])
    except Exception as exc:  # corrupt file, missing metadata
        raise ValueError(f"salience weights {p} are unreadable: {exc}") from exc
    want = {"layers": spec.layers, "heads": spec.heads, "head_dim": spec.head_dim}
    if any(geometry.get(k) != v for k, v in want.items()):
        raise ValueError(f"salience weights {p} were trained for {geometry}, not this model's {want}")
    return {**want, "hidden": int(geometry.get("hidden", HIDDEN))}


def _load(spec, p: Path, device) -> SalienceHead:
    from safetensors.torch import load_file

    geometry = _geometry(spec, p)
    try:
        state = load_file(str(p))
    except Exception as exc:
        raise ValueError(f"salience weights {p} are unreadable: {exc}") from exc
    head = SalienceHead(**geometry)
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"salience weights {p} do not match the head: {exc}") from exc
    return head.to(device).eval()


def sse_targets(q: torch.Tensor, k: torch.Tensor, chunk_of_q: torch.Tensor, chunk_of_k: torch.Tensor,
                w_low: float = 1.0, w_diag: float = 0.5) -> torch.Tensor:
    """Salience targets for keys `k` from the queries `q` that attend to them (block-causal).

    Args:
        q: `[H, Nq, D]` queries, already rotated by RoPE at their positions (or RoPE-free).
        k: `[H, Nk, D]` keys, rotated likewise.
        chunk_of_q, chunk_of_k: `[Nq]`, `[Nk]` int64 chunk index of each query/key; query i sees key j
            iff `chunk_of_k[j] <= chunk_of_q[i]`.
    Returns:
        float32 `[Nk]` targets (see module docstring).
    """
    logits = torch.einsum("hqd,hkd->hqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    visible = chunk_of_k[None, :] <= chunk_of_q[:, None]
    p = softmax(logits.masked_fill(~visible[None], float("-inf")))
    later = chunk_of_q[:, None] > chunk_of_k[None, :]
    same = chunk_of_q[:, None] == chunk_of_k[None, :]
    s_low = p.masked_fill(~later[None], 0.0).amax(1).mean(0)
    s_diag = p.masked_fill(~same[None], 0.0).amax(1).mean(0)
    norm = lambda s: s / s.mean().clamp_min(1e-12)  # noqa: E731
    return w_low * norm(s_low) + w_diag * norm(s_diag)
