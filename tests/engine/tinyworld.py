"""Test-only world model and memory: small, random weights, real attention through `kernels.attend`.

`TinyWorld` implements `world.contract.WorldModel` (patch tokens, a couple of attention layers reading the
memory view, per-frame action embedding, a pose head). `ListMemory` is the agreed memory API reduced to a
full cache with an optional frame window, so engine tests do not depend on the memory package's progress;
`list_memory_bytes` prices its sessions for the server's admission.
Both are deterministic for a seed. Importable from a subprocess with `PYTHONPATH=tests/engine` and the
model name `tinyworld:build`.
"""

from __future__ import annotations

import torch

from reverie.kernels import attend
from reverie.kernels.view import KVSegment, KVView, RopeSpec
from reverie.memory.footprint import RECACHE_CHUNKS, Footprint, session_buffer_bytes
from reverie.world.actions import DOOM_ACTIONS, ActionSpace, Axis
from reverie.world.contract import ModelSpec, WorldModel

#: A keyboard + mouse space (multi-hot buttons, two mouse axes): what a plug-in like Matrix-Game declares.
KEYS_MOUSE = ActionSpace(buttons=("forward", "back", "left", "right", "jump"),
                         axes=(Axis("yaw", -2.0, 2.0, source="mouse_x", scale=0.05),
                               Axis("pitch", -1.0, 1.0, source="mouse_y", scale=-0.05)),
                         opposing=(("forward", "back"), ("left", "right")),
                         keys=(("forward", ("w",)), ("back", ("s",)), ("left", ("a",)), ("right", ("d",)),
                               ("jump", ("space",))))


class TinyWorld(WorldModel):
    def __init__(self, h: int = 16, w: int = 16, patch: int = 4, layers: int = 2, heads: int = 2,
                 head_dim: int = 8, seed: int = 0, pose_head: bool = True, chunk_frames: int = 1,
                 action_space: ActionSpace = DOOM_ACTIONS, frames_per_latent: int = 1,
                 action_binding: str = "per_frame"):
        tokens = (h // patch) * (w // patch)
        channels = patch * patch * 3
        self.patch = patch
        self.spec = ModelSpec(name="tinyworld", frame_shape=(h, w, 3), tokens_per_frame=tokens,
                              latent_shape=(tokens, channels), layers=layers, heads=heads, head_dim=head_dim,
                              chunk_frames=chunk_frames, steps=(1.0, 0.5), rope=RopeSpec(dims=4),
                              has_pose_head=pose_head, action_space=action_space,
                              frames_per_latent=frames_per_latent, action_binding=action_binding)
        g = torch.Generator().manual_seed(seed)
        width = heads * head_dim

        def rnd(*shape, scale=1.0):
            return torch.randn(*shape, generator=g) * scale / shape[0] ** 0.5

        self.w_in = rnd(channels, width)
        self.w_qkv = [rnd(width, 3 * width) for _ in range(layers)]
        self.w_out = [rnd(width, width, scale=0.5) for _ in range(layers)]
        vector = action_space.encoding == "vector"  # a projection of the vector, or one row per index
        self.act = torch.randn(action_space.dim if vector else len(action_space), width, generator=g) * 0.3
        self.t_emb = torch.randn(width, generator=g) * 0.3
        self.w_head = rnd(width, channels)
        self.w_pose = rnd(width, 3, scale=0.1)

    def seed_frame(self):
        """The start frame a server gives a session whose client sends none (a gradient)."""
        import numpy as np

        h, w, _ = self.spec.frame_shape
        y, x = np.mgrid[0:h, 0:w]
        return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.uint8)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        f = self.spec.frames_per_latent  # a stand-in temporal encoder: a latent is the mean of its frames
        t, h, w, c = frames.shape
        t //= f
        p = self.patch
        x = frames.float().reshape(t, f, h, w, c).mean(1).div(127.5).sub(1.0).reshape(t, h // p, p, w // p, p, c)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(t, (h // p) * (w // p), p * p * c)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        t = latents.shape[0]
        h, w, c = self.spec.frame_shape
        p = self.patch
        x = latents.reshape(t, h // p, w // p, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(t, h, w, c)
        f = self.spec.frames_per_latent  # ... and its decoder a brightness ramp over the latent's frames
        ramp = torch.arange(f, dtype=x.dtype).mul(0.05).reshape(1, f, 1, 1, 1)
        x = (x[:, None] + ramp).reshape(t * f, h, w, c)
        return x.add(1.0).mul(127.5).clamp(0, 255).round().to(torch.uint8)

    def _forward(self, x, t, actions, memory, commit: bool):
        s = self.spec
        n = x.shape[0] * s.tokens_per_frame
        hdn = x.reshape(n, -1) @ self.w_in
        act = actions.float() @ self.act if actions.is_floating_point() else self.act[actions]
        act = act.reshape(x.shape[0], -1, act.shape[-1]).mean(1)  # per-frame actions: their mean per latent
        hdn = hdn + act.repeat_interleave(s.tokens_per_frame, 0) + t * self.t_emb
        for layer in range(s.layers):
            q, k, v = (hdn @ self.w_qkv[layer]).reshape(n, 3, s.heads, s.head_dim).permute(1, 2, 0, 3)
            out = attend(q, memory.view(layer, q, k, v))
            if commit:  # after the view, as the default model does
                memory.commit(layer, k, v, q)
            hdn = hdn + torch.tanh(out.permute(1, 0, 2).reshape(n, -1) @ self.w_out[layer])
        return hdn

    @torch.inference_mode()
    def denoise(self, x, t, actions, memory):
        hdn = self._forward(x, t, actions, memory, commit=False)
        return (x * (1 - t) + torch.tanh(hdn @ self.w_head).reshape(x.shape) * t).clamp(-1, 1)

    @torch.inference_mode()
    def commit(self, x0, actions, memory):
        hdn = self._forward(x0, 0.0, actions, memory, commit=True)
        if not self.spec.has_pose_head:
            return None
        per_frame = hdn.reshape(x0.shape[0], self.spec.tokens_per_frame, -1).mean(1)
        return per_frame @ self.w_pose


def build(**kwargs) -> TinyWorld:
    return TinyWorld(**kwargs)


class BudgetError(ValueError):
    pass


class ListMemory:
    """Full KV cache, optionally keeping only the newest frames that fit `budget_bytes` (window)."""

    def __init__(self, spec: ModelSpec, policy: str = "full", budget_bytes: int | None = None):
        self.check(spec, policy, budget_bytes)
        self.spec, self.policy, self.budget_bytes = spec, policy, budget_bytes
        self.max_frames = None if budget_bytes is None else budget_bytes // spec.kv_bytes_per_frame - 1
        self.reset()

    @staticmethod
    def check(spec: ModelSpec, policy: str, budget_bytes: int | None) -> None:
        if policy not in ("full", "window"):
            raise KeyError(f"unknown policy {policy!r}")
        per_frame = spec.kv_bytes_per_frame
        if budget_bytes is not None and budget_bytes < 2 * per_frame:
            raise BudgetError(f"budget {budget_bytes} is below two frames ({2 * per_frame} bytes)")

    def reset(self):
        self.k = [[] for _ in range(self.spec.layers)]
        self.v = [[] for _ in range(self.spec.layers)]
        self.pos: list[int] = []
        self.frames_committed = 0
        self.flushes = 0

    def flush(self):
        self.flushes += 1

    def begin_chunk(self, pose=None, events=()):
        self._chunk_pos = torch.arange(self.frames_committed, self.frames_committed + self.spec.chunk_frames)
        self._new = [[] for _ in range(self.spec.layers)]

    def _q_pos(self, n):
        return self._chunk_pos.repeat_interleave(n // self._chunk_pos.numel())

    def view(self, layer, q, k, v):
        q_pos = self._q_pos(q.shape[1])
        segs = []
        if self.k[layer]:
            pos = torch.tensor(self.pos).repeat_interleave(self.spec.tokens_per_frame)
            segs.append(KVSegment(k=torch.cat(self.k[layer], 1), v=torch.cat(self.v[layer], 1), pos=pos))
        segs.append(KVSegment(k=k, v=v, pos=q_pos))
        return KVView(segments=tuple(segs), q_pos=q_pos, rope=self.spec.rope)

    def commit(self, layer, k, v, q):
        tpf = self.spec.tokens_per_frame
        self._new[layer] = [(k[:, f * tpf:(f + 1) * tpf].clone(), v[:, f * tpf:(f + 1) * tpf].clone())
                            for f in range(k.shape[1] // tpf)]

    def end_chunk(self):
        if not any(self._new):  # nothing committed (a prediction): like MemoryManager, no frame is added
            return
        for layer, new in enumerate(self._new):
            self.k[layer] += [k for k, _ in new]
            self.v[layer] += [v for _, v in new]
        self.pos.extend(self._chunk_pos.tolist())
        self.frames_committed += self.spec.chunk_frames
        if self.max_frames is not None and len(self.pos) > self.max_frames:
            drop = len(self.pos) - self.max_frames
            self.pos = self.pos[drop:]
            for layer in range(self.spec.layers):
                self.k[layer] = self.k[layer][drop:]
                self.v[layer] = self.v[layer][drop:]

    def kv_bytes(self):
        return len(self.pos) * self.spec.kv_bytes_per_frame

    def stats(self):
        return {"policy": self.policy, "budget_bytes": self.budget_bytes, "kv_bytes": self.kv_bytes(),
                "regions": {"recent": self.kv_bytes()}, "frames_committed": self.frames_committed}


def list_memory_factory(spec, policy, budget_bytes):
    return ListMemory(spec, policy, budget_bytes)


def list_memory_bytes(spec, policy, budget_bytes, *, recache_chunks: int = RECACHE_CHUNKS,
                      latent_dtype=torch.float32, device="cpu") -> Footprint:
    """What a session on a `ListMemory` holds (its budget, and the session's own buffers); the server's
    `footprint` for `list_memory_factory`."""
    ListMemory.check(spec, policy, budget_bytes)
    if budget_bytes is None:
        raise BudgetError("a ListMemory without a budget grows without bound")
    parts = {"kv": budget_bytes, **session_buffer_bytes(spec, recache_chunks, latent_dtype)}
    return Footprint(policy=policy, budget_bytes=budget_bytes, parts=tuple(parts.items()))


class TinyStack(TinyWorld):
    """A frame-stacking model with no attention cache (DIAMOND's shape): its history is its last
    `frame_context` clean latents, which the engine keeps and passes as `context`."""

    def __init__(self, frame_context: int = 2, **kw):
        super().__init__(**kw)
        from dataclasses import replace

        self.spec = replace(self.spec, name="tinystack", layers=0, frame_context=frame_context, has_pose_head=False)

    def _mix(self, x, t, actions, context):
        s = self.spec
        n = x.shape[0] * s.tokens_per_frame
        hdn = x.reshape(n, -1) @ self.w_in
        act = actions.float() @ self.act if actions.is_floating_point() else self.act[actions]
        hdn = hdn + act.reshape(x.shape[0], -1, act.shape[-1]).mean(1).repeat_interleave(s.tokens_per_frame, 0)
        if context is not None:  # the stacked frames, averaged, in place of attention
            hdn = hdn + (context.mean(0) @ self.w_in).repeat(x.shape[0], 1)
        return hdn + t * self.t_emb

    @torch.inference_mode()
    def denoise(self, x, t, actions, memory, context=None):
        hdn = self._mix(x, t, actions, context)
        return (x * (1 - t) + torch.tanh(hdn @ self.w_head).reshape(x.shape) * t).clamp(-1, 1)

    @torch.inference_mode()
    def commit(self, x0, actions, memory, context=None):
        return None


def build_stack(**kwargs) -> TinyStack:
    return TinyStack(**kwargs)


def build_chunked(**kwargs) -> TinyWorld:
    """Keys + mouse, 4 frames per latent, 3 latents per chunk (Matrix-Game 2.0's shape)."""
    return TinyWorld(chunk_frames=3, frames_per_latent=4, action_space=KEYS_MOUSE, **kwargs)
