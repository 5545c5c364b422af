"""`reverie train-salience`: distil PaFu-KV's salience head (S-MLP) for a world model.

1. Roll the model out with the unmanaged `full` cache on real actions (the real game's `wander` driver by
   default, recorded rollouts with `--rollout DIR`, or seeded random actions with `--source random`),
   recording every layer's committed keys and clean queries.
2. SSE targets (`memory.salience.sse_targets`): for every cached token, the attention that later chunks
   actually paid it (future-informed) and its own chunk paid it (past/diagonal), each normalised by its
   mean; queries are subsampled per frame and processed in blocks.
3. Fit one small MLP per layer on the keys (MSE on `log1p(target)`), hold out the last 20% of tokens, and
   report the held-out rank correlation and top-quarter overlap against the targets.
4. Save safetensors (default: `memory/weights/salience-<model name>.safetensors`, where the `salience`
   and `dual` policies look for it; the file records the geometry and is refused for another one).

Works with any registered model: it only uses the `WorldModel` contract and the memory API.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.bench.memory import add_run_arguments

    add_run_arguments(parser)
    parser.add_argument("--source", choices=("game", "random", "rollout"), default="game")
    parser.add_argument("--rollout", action="append", default=[], help="rollout directory (with --source rollout)")
    parser.add_argument("--map", default=None, help="real-game map (default: the training map)")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--frames", type=int, default=128, help="frames per episode")
    parser.add_argument("--queries-per-frame", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default=None, help="output safetensors path")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


class KeyTap:
    """Memory proxy: records committed keys and clean queries per layer, forwards to the real memory."""

    def __init__(self, memory, layers: int) -> None:
        self.memory = memory
        self.k = [[] for _ in range(layers)]
        self.q = [[] for _ in range(layers)]

    def view(self, layer, q, k, v):
        return self.memory.view(layer, q, k, v)

    def commit(self, layer, k, v, q):
        self.k[layer].append(k.float().cpu())
        self.q[layer].append(q.float().cpu())
        self.memory.commit(layer, k, v, q)

    def __getattr__(self, name):
        if name == "memory":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.memory, name)


def episodes(args, spec):
    from reverie.engine.bench.episodes import Episode, game_episode, random_episode

    if args.source == "rollout":
        if not args.rollout:
            raise SystemExit("train-salience: --source rollout needs --rollout DIR")
        from reverie.engine.rollout.reader import read_rollout

        out = []
        for path in args.rollout:
            r = read_rollout(path)
            if tuple(r.frames.shape[1:]) != tuple(spec.frame_shape):
                raise SystemExit(f"train-salience: {path} has frames {tuple(r.frames.shape[1:])}, "
                                 f"the model makes {spec.frame_shape}")
            out.append(Episode([int(a) for a in r.actions[: args.frames]], r.frames[: args.frames]))
        return out
    if args.source == "random":
        return [random_episode(spec, args.seed + e, args.frames) for e in range(args.episodes)]
    from reverie.world.games.maps import DEFAULT_TRAIN_MAP

    return [game_episode(spec, args.map or DEFAULT_TRAIN_MAP, args.seed + e, args.frames, "wander")
            for e in range(args.episodes)]


def layer_targets(qs, ks, spec, per_frame: int, block_frames: int = 16):
    """SSE targets `[N]` for one layer's keys (`ks`, `qs`: lists of `[H, C*F, D]` per committed chunk)."""
    import torch

    from reverie.kernels.rope import apply_rope_ref
    from reverie.memory.scorers import softmax

    f, c = spec.tokens_per_frame, spec.chunk_frames
    k = torch.cat(ks, 1)
    q = torch.cat(qs, 1)
    n = k.shape[1]
    frame = torch.arange(n) // f
    kr = apply_rope_ref(k, frame, spec.rope)
    chunk_k = frame // c
    step = max(f // per_frame, 1)
    sel = torch.arange(n).reshape(-1, f)[:, ::step][:, :per_frame].reshape(-1)
    qr = apply_rope_ref(q.index_select(1, sel), frame[sel], spec.rope)
    chunk_q = frame[sel] // c
    low = torch.zeros(n)
    diag = torch.zeros(n)
    rows = block_frames * sel.shape[0] // max(n // f, 1)
    for start in range(0, sel.shape[0], max(rows, 1)):
        stop = min(start + max(rows, 1), sel.shape[0])
        logits = torch.einsum("hqd,hkd->hqk", qr[:, start:stop], kr) / math.sqrt(k.shape[-1])
        cq = chunk_q[start:stop]
        visible = chunk_k[None, :] <= cq[:, None]
        p = softmax(logits.masked_fill(~visible[None], float("-inf")))
        later = (cq[:, None] > chunk_k[None, :])[None]
        same = (cq[:, None] == chunk_k[None, :])[None]
        low = torch.maximum(low, p.masked_fill(~later, 0.0).amax(1).mean(0))
        diag = torch.maximum(diag, p.masked_fill(~same, 0.0).amax(1).mean(0))
    norm = lambda s: s / s.mean().clamp_min(1e-12)  # noqa: E731
    return k, norm(low) + 0.5 * norm(diag)


def rank_corr(a, b) -> float:
    import torch

    ra = torch.argsort(torch.argsort(a)).float()
    rb = torch.argsort(torch.argsort(b)).float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def top_overlap(pred, target, frac: float = 0.25) -> float:
    import torch

    n = max(1, int(frac * pred.numel()))
    a = set(torch.topk(pred, n).indices.tolist())
    b = set(torch.topk(target, n).indices.tolist())
    return len(a & b) / n


def run(args: argparse.Namespace) -> int:
    import torch

    from reverie.engine.bench.episodes import free_run
    from reverie.engine.bench.memory import load_world_model
    from reverie.memory import MemoryManager
    from reverie.memory.salience import SalienceHead, default_weights_path

    model = load_world_model(args)
    spec = model.spec
    data = [[] for _ in range(spec.layers)]
    for ep in episodes(args, spec):
        mem = MemoryManager.create(spec, policy="full", horizon_frames=len(ep.actions) + spec.chunk_frames,
                                   device=args.device or model.device)
        tap = KeyTap(mem, spec.layers)
        free_run(model, tap, ep, args.seed, len(ep.actions), "none")  # a Session on the tapped memory
        for layer in range(spec.layers):
            data[layer].append(layer_targets(tap.q[layer], tap.k[layer], spec, args.queries_per_frame))
    torch.manual_seed(args.seed)
    head = SalienceHead(spec.layers, spec.heads, spec.head_dim)
    report = []
    for layer in range(spec.layers):
        keys = torch.cat([k for k, _ in data[layer]], 1)
        target = torch.log1p(torch.cat([t for _, t in data[layer]]))
        cut = int(0.8 * keys.shape[1])
        opt = torch.optim.Adam(head.mlps[layer].parameters(), lr=args.lr)
        for _ in range(args.steps):
            loss = torch.nn.functional.mse_loss(head(layer, keys[:, :cut]), target[:cut])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = head(layer, keys[:, cut:])
        report.append({"layer": layer, "train_mse": loss.item(), "heldout_rank_corr": rank_corr(pred, target[cut:]),
                       "heldout_top25_overlap": top_overlap(pred, target[cut:]), "tokens": int(keys.shape[1])})
    out = args.out or str(default_weights_path(spec.name))
    head.save(out, spec.name, extra={"source": args.source, "frames": args.frames, "episodes": args.episodes,
                                     "seed": args.seed, "steps": args.steps,
                                     "command": "reverie " + " ".join(shlex.quote(a) for a in sys.argv[1:])})
    for r in report:
        print(f"layer {r['layer']}: held-out rank corr {r['heldout_rank_corr']:.3f}, "
              f"top-25% overlap {r['heldout_top25_overlap']:.2f}, train mse {r['train_mse']:.4f}")
    print(f"saved {out}")
    if args.json:
        print(json.dumps({"out": out, "model": args.model, "layers": report}))
    return 0
