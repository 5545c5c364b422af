"""The block-causal DiT network: patch tokens, adaLN-Zero blocks conditioned per frame on (action, noise).

Two ways to run the same weights:

* `forward_frames` (training, tests): many frames at once with an explicit frame-level attention mask,
  temporal RoPE applied from absolute frame positions, attention by `scaled_dot_product_attention`.
* `step` (inference): one chunk, attending through a memory object: per layer, pre-temporal-RoPE q/k/v go
  to `memory.view`, attention is `kernels.attend(q, view)` (which rotates by slot positions), and on the
  commit pass `memory.commit` keeps k/v.

Shapes: `T` tokens per frame, `P` patch values (`patch * patch * 3`), `D` width, `H` heads, `hd` head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reverie.world.dit.config import DiTConfig
from reverie.world.dit.rope import SpatialRope, apply_temporal_rope
from reverie.world.dit.warp import WARP_PARAMS, warp_latents


def timestep_features(t: torch.Tensor, dims: int = 128) -> torch.Tensor:
    """Sinusoidal features `[..., dims]` of noise levels `t` in [0, 1]."""
    half = dims // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.to(torch.float32) * 1000.0)[..., None] * freqs
    return torch.cat((args.cos(), args.sin()), dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + scale) + shift


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation (shift/scale/gate for attention and MLP)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.width
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def qkv_heads(self, h: torch.Tensor, mod: torch.Tensor, spatial: SpatialRope):
        """`h` `[..., N, D]`, `mod` `[..., N, 6D]` -> q, k, v `[..., H, N, hd]` (spatial RoPE on q and k)."""
        shift, scale = mod[..., 0:1 * h.shape[-1]], mod[..., h.shape[-1]:2 * h.shape[-1]]
        x = modulate(self.norm1(h), shift, scale)
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim))  # [..., N, 3, H, hd]
        qkv = qkv.movedim(-3, 0).transpose(-3, -2)  # [3, ..., H, N, hd]
        q, k, v = qkv.unbind(0)
        return spatial(q), spatial(k), v

    def finish(self, h: torch.Tensor, attn: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """Residual updates after attention; `attn` `[..., H, N, hd]`."""
        d = h.shape[-1]
        gate1, shift2, scale2, gate2 = (mod[..., i * d:(i + 1) * d] for i in range(2, 6))
        h = h + gate1 * self.proj(attn.transpose(-3, -2).flatten(-2))
        return h + gate2 * self.mlp(modulate(self.norm2(h), shift2, scale2))


def _noisy_attention(qn, kc, vc, kn, vn, w: int, tpf: int, mask: torch.Tensor) -> torch.Tensor:
    """Each noisy frame's queries over `[its visible clean keys | its own keys]`, one fused SDPA call.

    qn, kn, vn: `[B, H, W*T, hd]`; kc, vc: `[B, H, C, hd]`; mask: float `[B|1, 1, W, C + T]`.
    Returns `[B, H, W*T, hd]`.
    """
    b, h, _, hd = qn.shape
    c = kc.shape[-2]
    keys = torch.cat((kc[:, :, None].expand(b, h, w, c, hd), kn.unflatten(-2, (w, tpf))), -2)
    vals = torch.cat((vc[:, :, None].expand(b, h, w, c, hd), vn.unflatten(-2, (w, tpf))), -2)
    q = qn.reshape(b, h * w, tpf, hd)
    m = mask.expand(mask.shape[0], h, w, c + tpf).reshape(mask.shape[0], h * w, 1, c + tpf)
    out = F.scaled_dot_product_attention(q, keys.reshape(b, h * w, c + tpf, hd),
                                         vals.reshape(b, h * w, c + tpf, hd), attn_mask=m)
    return out.reshape(b, h, w * tpf, hd)


def _doubled_masks(r: int, w: int, tpf: int, extra_valid: torch.Tensor | None, b: int,
                   device: torch.device | str = "cpu"):
    """Additive float masks for `DiTNet.forward_doubled`, built on `device`: clean `[B|1, 1, (R+W)T, (R+W)T]`
    and noisy `[B|1, 1, W, (R+W)T + T]` (per noisy frame, over its keys; 0 = visible, -inf = hidden)."""
    n = r + w
    clean = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    noisy = torch.zeros(w, n, dtype=torch.bool, device=device)
    noisy[:, :r] = True
    noisy[:, r:] = torch.ones(w, w, dtype=torch.bool, device=device).tril(-1)
    clean, noisy = clean[None], noisy[None]
    if extra_valid is not None and r:
        hide = torch.zeros(b, n, dtype=torch.bool, device=device)
        hide[:, :r] = ~extra_valid.to(device)
        clean = clean & ~hide[:, None, :]
        idx = torch.arange(r, device=device)
        clean[:, idx, idx] = True
        noisy = noisy & ~hide[:, None, :]
    clean = clean.repeat_interleave(tpf, -1).repeat_interleave(tpf, -2)[:, None]
    noisy = torch.cat((noisy.repeat_interleave(tpf, -1),
                       torch.ones(*noisy.shape[:2], tpf, dtype=torch.bool, device=device)), -1)
    noisy = noisy[:, None]
    return (torch.zeros(clean.shape, device=device).masked_fill_(~clean, float("-inf")),
            torch.zeros(noisy.shape, device=device).masked_fill_(~noisy, float("-inf")))


class DiTNet(nn.Module):
    """Weights of the default model (see module docstring for the two ways to run it)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        # with `prev_frame`, the previous frame's clean patch rides along with each patch
        self.patch_in = nn.Linear(cfg.patch_dim * (2 if cfg.prev_frame else 1), d)
        self.pos_emb = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(128, d), nn.SiLU(), nn.Linear(d, d))
        self.act_emb = nn.Embedding(cfg.num_actions, d)
        nn.init.normal_(self.act_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, cfg.patch_dim)
        for lin in (self.ada_out, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.pose_out = nn.Linear(d, 3) if cfg.pose_head else None
        self.warp_out = None
        if cfg.prev_warp:  # camera motion of the previous frame (world.dit.warp); zeros = identity
            self.warp_out = nn.Linear(d, WARP_PARAMS)
            nn.init.zeros_(self.warp_out.weight)
            nn.init.zeros_(self.warp_out.bias)
        self.flow_out = None
        if cfg.prev_flow:  # per-patch residual displacement of that warp (parallax); zeros = none
            self.flow_out = nn.Linear(d, 2)
            nn.init.zeros_(self.flow_out.weight)
            nn.init.zeros_(self.flow_out.bias)
        gh, gw = cfg.grid
        self.spatial = SpatialRope(gh, gw, cfg.temporal_rope, cfg.row_rope, cfg.col_rope, cfg.spatial_theta)

    # -- shared pieces -------------------------------------------------------------------------------
    def _prev(self, x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor | None:
        """The previous-frame latents matching `x` (zeros where there is none), or None without `prev_frame`."""
        if not self.cfg.prev_frame:
            if prev is not None:
                raise ValueError("this network takes no previous frame (cfg.prev_frame is False)")
            return None
        return torch.zeros_like(x) if prev is None else prev.to(x.dtype)

    def _embed(self, x: torch.Tensor, t: torch.Tensor, actions: torch.Tensor, prev: torch.Tensor | None):
        """x `[..., n, T, P]`, t `[..., n]`, actions `[..., n]`, prev like x or None -> tokens
        `[..., n*T, D]`, cond `[..., n, D]`."""
        h = self.patch_in(x if prev is None else torch.cat((x, prev), -1)) + self.pos_emb
        cond = F.silu(self.t_mlp(timestep_features(t)) + self.act_emb(actions))
        return h.flatten(-3, -2), cond

    def _per_token(self, per_frame: torch.Tensor) -> torch.Tensor:
        """`[..., n, C]` frame-level values -> `[..., n*T, C]` token-level."""
        return per_frame.repeat_interleave(self.cfg.tokens_per_frame, dim=-2)

    def _head(self, h: torch.Tensor, cond: torch.Tensor, prev: torch.Tensor | None):
        """Final layer: tokens `[..., n*T, D]` -> x0 `[..., n, T, P]` (a correction of `prev` when
        given), pose `[..., n, 3]` (or None) and the previous frame as the copy path used it (moved by the
        camera warp with `prev_warp`; None without `prev_frame`)."""
        return self._head_from(h, self.ada_out(cond), prev)

    def _head_from(self, h: torch.Tensor, out_mod: torch.Tensor, prev: torch.Tensor | None):
        """x0 = correction (+ the previous frame, moved by the predicted camera warp with `prev_warp`; with
        `prev_reveal` the correction only where that move revealed pixels)."""
        cfg = self.cfg
        shift, scale = self._broadcastable(out_mod).chunk(2, dim=-1)
        feats = modulate(self.norm_out(h), shift, scale)
        out = self.out(feats).unflatten(-2, (-1, cfg.tokens_per_frame))
        if prev is not None:
            if self.warp_out is not None:
                frames = feats.unflatten(-2, (-1, cfg.tokens_per_frame))  # [..., n, T, D]
                params = self.warp_out(frames.mean(dim=-2))
                flow = None if self.flow_out is None else self.flow_out(frames)
                moved = warp_latents(prev, params, cfg.patch, cfg.frame_h, cfg.frame_w, flow,
                                     mode=cfg.prev_resample, padding=cfg.prev_padding,
                                     with_revealed=cfg.prev_reveal)
                if cfg.prev_reveal:  # the correction paints only what the move revealed
                    prev, revealed = moved
                    out = out * revealed
                else:
                    prev = moved
            out = out + prev
        pose = None
        if self.pose_out is not None:
            pooled = h.unflatten(-2, (-1, self.cfg.tokens_per_frame)).mean(dim=-2)
            pose = self.pose_out(pooled)
        return out, pose, prev

    # -- training path --------------------------------------------------------------------------------
    def forward_frames(self, x: torch.Tensor, t: torch.Tensor, actions: torch.Tensor, pos: torch.Tensor,
                       frame_mask: torch.Tensor, prev: torch.Tensor | None = None, with_prev: bool = False):
        """Run many frames at once.

        Args:
            x: `[B, n, T, P]` latents of `n` frames (each at its own noise level).
            t: `[B, n]` noise levels; actions: `[B, n]` int64; pos: `[B, n]` temporal positions.
            frame_mask: bool `[B or 1, n, n]`, `[i, j]` true when frame i may attend to frame j.
            prev: `[B, n, T, P]` each frame's previous clean frame (zeros: none), with `cfg.prev_frame`.
        Returns:
            x0 estimates `[B, n, T, P]` and pose deltas `[B, n, 3]` (or None); with `with_prev`, also the
            previous frames as the copy path used them (warped with `prev_warp`).
        """
        cfg = self.cfg
        prev = self._prev(x, prev)
        h, cond = self._embed(x, t, actions, prev)
        token_pos = self._per_token(pos[..., None].to(torch.float32))[..., 0]  # [B, N]
        mask = frame_mask.repeat_interleave(cfg.tokens_per_frame, -1).repeat_interleave(cfg.tokens_per_frame, -2)
        mask = mask[:, None]  # broadcast over heads
        for block in self.blocks:
            mod = self._per_token(block.ada(cond))
            q, k, v = block.qkv_heads(h, mod, self.spatial)
            q = apply_temporal_rope(q, token_pos[:, None], cfg.temporal_rope, cfg.temporal_theta)
            k = apply_temporal_rope(k, token_pos[:, None], cfg.temporal_rope, cfg.temporal_theta)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            h = block.finish(h, attn, mod)
        out = self._head(h, cond, prev)
        return out if with_prev else out[:2]

    def forward_doubled(self, x: torch.Tensor, t: torch.Tensor, actions: torch.Tensor, pos: torch.Tensor,
                        n_extra: int, extra_valid: torch.Tensor | None = None, prev: torch.Tensor | None = None,
                        with_prev: bool = False):
        """`forward_frames` for `[extra (R) | clean (W) | noisy (W)]` sequences and the mask of
        `world.dit.train.block_causal_mask`, computed without the masked-out blocks: clean frames attend
        block-causally among `[extra | clean]`; each noisy frame attends to `[extra | clean < i]` and to
        itself only (a joint softmax over both parts). Same inputs/outputs as `forward_frames`.
        """
        cfg = self.cfg
        tpf = cfg.tokens_per_frame
        b, n = x.shape[:2]
        r = n_extra
        w = (n - r) // 2
        c_tok = (r + w) * tpf
        prev = self._prev(x, prev)
        h, cond = self._embed(x, t, actions, prev)
        token_pos = self._per_token(pos[..., None].to(torch.float32))[..., 0][:, None]  # [B, 1, N]
        clean_mask, noisy_mask = _doubled_masks(r, w, tpf, extra_valid, b, x.device)
        for block in self.blocks:
            mod = self._per_token(block.ada(cond))
            q, k, v = block.qkv_heads(h, mod, self.spatial)
            q = apply_temporal_rope(q, token_pos, cfg.temporal_rope, cfg.temporal_theta)
            k = apply_temporal_rope(k, token_pos, cfg.temporal_rope, cfg.temporal_theta)
            qc, qn = q[..., :c_tok, :], q[..., c_tok:, :]
            kc, kn = k[..., :c_tok, :], k[..., c_tok:, :]
            vc, vn = v[..., :c_tok, :], v[..., c_tok:, :]
            out_c = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=clean_mask)
            out_n = _noisy_attention(qn, kc, vc, kn, vn, w, tpf, noisy_mask)
            h = block.finish(h, torch.cat((out_c, out_n), -2), mod)
        out = self._head(h, cond, prev)
        return out if with_prev else out[:2]

    # -- inference path -------------------------------------------------------------------------------
    def condition_table(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Every block's adaLN modulation for noise level `t` and every action (a pure function of the
        weights; inference caches it per level): `[L, num_actions, 6D]` and the final layer's `[num_actions, 2D]`."""
        acts = torch.arange(self.cfg.num_actions, device=self.pos_emb.device)
        tt = torch.full((self.cfg.num_actions,), float(t), device=self.pos_emb.device)
        cond = F.silu(self.t_mlp(timestep_features(tt)) + self.act_emb(acts))
        return torch.stack([b.ada(cond) for b in self.blocks]), self.ada_out(cond)

    def step(self, x: torch.Tensor, actions: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor], memory,
             attend, commit: bool, prev: torch.Tensor | None = None):
        """One chunk through the memory.

        Args:
            x: `[C, T, P]` latents at one noise level; actions: `[C]` int64.
            table: `condition_table(t)` for that noise level.
            memory: `AttentionMemory`; attend: `(q [H, N, hd], view) -> [H, N, hd]`.
            commit: call `memory.commit` per layer (the clean pass).
            prev: `[C, T, P]` each frame's previous clean frame (zeros: none), with `cfg.prev_frame`.
        Returns:
            x0 estimate `[C, T, P]`, pose `[C, 3]` (or None) and the previous frame as the copy path used
            it (moved by the camera warp with `prev_warp`; None without `prev_frame`).
        """
        blocks_table, out_table = table
        prev = self._prev(x, prev)
        h = (self.patch_in(x if prev is None else torch.cat((x, prev), -1)) + self.pos_emb).flatten(-3, -2)
        for layer, block in enumerate(self.blocks):
            mod = self._broadcastable(blocks_table[layer].index_select(0, actions))
            q, k, v = block.qkv_heads(h, mod, self.spatial)
            view = memory.view(layer, q, k, v)
            attn = attend(q, view)
            if commit:
                memory.commit(layer, k, v, q)
            h = block.finish(h, attn, mod)
        return self._head_from(h, out_table.index_select(0, actions), prev)

    def _broadcastable(self, per_frame: torch.Tensor) -> torch.Tensor:
        """`[..., n, X]` frame values that broadcast against `[..., n*T, X]` tokens (no copy when n == 1)."""
        return per_frame if per_frame.shape[-2] == 1 else self._per_token(per_frame)
