"""Configuration of the default model (architecture) and of its training run, as frozen dataclasses.

Presets are looked up by name: `model_config("default")`, `train_config("tiny")`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace


def config_from_dict(cls, data: dict):
    """`cls(**data)` for a config dataclass, refusing fields it does not have (a checkpoint's metadata
    written by another version) with a `ValueError` that names them."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**data)


def config_with_overrides(cfg, overrides: dict):
    """A copy of the config dataclass `cfg` with `overrides` replaced (None values keep the field), refusing
    names it does not have with a `ValueError` that lists the ones it does."""
    known = {f.name for f in fields(cfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} field(s) {unknown}; choose from {sorted(known)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


RESAMPLE_MODES = ("bilinear", "bicubic", "nearest")
PADDING_MODES = ("border", "reflection")


@dataclass(frozen=True, slots=True)
class DiTConfig:
    """Architecture of the block-causal DiT over frame patches.

    Head channels: `[temporal_rope | row_rope | col_rope | free]`; see `world.dit.rope`. The pose head
    predicts per-frame motion `(forward, left, dangle)` divided by `pose_scale` (map units, degrees).

    `prev_frame`: each frame also sees the previous frame's clean latent directly, concatenated to its
    patch input, and predicts its x0 as that previous frame plus a correction (a per-patch copy path, as
    frame-stacking world models do); memory still carries everything further back. The engine passes the
    previous frame as `context` (`ModelSpec.frame_context == 1`).

    `prev_warp` (with `prev_frame`): the copy path first moves the previous frame by a global affine warp
    the network predicts per frame (camera turn, walk, bob; `world.dit.warp`). Its head starts at the
    identity, so a `prev_frame` checkpoint warm-starts a `prev_warp` model exactly.

    `prev_flow` (with `prev_warp`): the warp also moves each patch by a residual displacement the network
    predicts per token, so the copy path follows parallax (near floor fast, far walls slow). Its head
    starts at zero too, so a `prev_warp` checkpoint warm-starts a `prev_flow` model exactly.

    `prev_reveal` (with `prev_warp`): the correction paints only the pixels the warp reveals (those it
    samples from outside the previous frame); every other pixel is the moved previous frame itself. A
    one-step model's correction is the mean of the frames it cannot tell apart, so added everywhere at
    every step it softens and tints the picture frame after frame; copied, the detail stays. No weights of
    its own: any `prev_warp` checkpoint of the same shape warm-starts it.

    `prev_resample`: how the copy path samples the previous frame (`torch.nn.functional.grid_sample`'s
    mode): "bilinear" (the bundled model), "bicubic" (sharper, still differentiable) or "nearest" (exact
    pixels, no gradient to the warp: play only).

    `prev_padding`: what the copy path shows where the warp samples outside the previous frame, before the
    correction paints it: "border" (the edge pixel repeated; the bundled model) or "reflection" (the frame
    mirrored at its edge, which continues floor, ceiling and wall texture instead of streaking them).
    """

    frame_h: int = 48
    frame_w: int = 64
    patch: int = 16
    width: int = 256
    layers: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    temporal_rope: int = 16
    row_rope: int = 16
    col_rope: int = 16
    temporal_theta: float = 10000.0
    spatial_theta: float = 100.0
    num_actions: int = 27
    pose_head: bool = True
    pose_scale: tuple[float, float, float] = (16.0, 16.0, 10.0)
    prev_frame: bool = False
    prev_warp: bool = False
    prev_flow: bool = False
    prev_reveal: bool = False
    prev_resample: str = "bilinear"
    prev_padding: str = "border"

    def __post_init__(self) -> None:
        object.__setattr__(self, "pose_scale", tuple(float(v) for v in self.pose_scale))
        if len(self.pose_scale) != 3:
            raise ValueError("pose_scale must have 3 entries (forward, left, dangle)")
        if self.frame_h % self.patch or self.frame_w % self.patch:
            raise ValueError(f"frame {self.frame_w}x{self.frame_h} is not a multiple of patch {self.patch}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.temporal_rope + self.row_rope + self.col_rope > self.head_dim:
            raise ValueError("rope channels exceed head_dim")
        for name in ("temporal_rope", "row_rope", "col_rope"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even")
        if self.prev_warp and not self.prev_frame:
            raise ValueError("prev_warp needs prev_frame (it warps the previous frame)")
        if self.prev_flow and not self.prev_warp:
            raise ValueError("prev_flow needs prev_warp (its flow refines the camera warp)")
        if self.prev_reveal and not self.prev_warp:
            raise ValueError("prev_reveal needs prev_warp (the warp decides which pixels are revealed)")
        if self.prev_resample not in RESAMPLE_MODES:
            raise ValueError(f"prev_resample must be one of {RESAMPLE_MODES}, got '{self.prev_resample}'")
        if self.prev_padding not in PADDING_MODES:
            raise ValueError(f"prev_padding must be one of {PADDING_MODES}, got '{self.prev_padding}'")
        if self.layers < 1 or self.num_actions < 1:
            raise ValueError("layers and num_actions must be >= 1")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def grid(self) -> tuple[int, int]:
        return self.frame_h // self.patch, self.frame_w // self.patch

    @property
    def tokens_per_frame(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * 3

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("prev_frame", "prev_warp", "prev_flow", "prev_reveal"):
            if not data[name]:
                del data[name]  # keeps the hash of configs written before the field existed
        for name, default in (("prev_resample", "bilinear"), ("prev_padding", "border")):
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DiTConfig":
        return config_from_dict(cls, data)

    def hash(self) -> str:
        """Short stable hash of the architecture (goes into checkpoints and rollouts)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class GameData:
    """A training run's data recipe when no recorded rollouts are given: `episodes_per` seeded episodes of
    `episode_steps` steps for every (train map, exploration driver) pair, the game advancing
    `tics_per_step` tics per step. Shared by the DiT's and the renderer's training configs. (Runs before
    the rename to drivers stored `drivers` as `policies` in their checkpoint's "train".)"""

    maps: tuple[str, ...] = ("maze", "freedoom2-map01")
    drivers: tuple[str, ...] = ("random", "wander", "go-and-return")
    episodes_per: int = 10
    episode_steps: int = 1000
    tics_per_step: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(self.maps))
        object.__setattr__(self, "drivers", tuple(self.drivers))
        if self.tics_per_step < 1 or self.episodes_per < 1:
            raise ValueError("tics_per_step and episodes_per must be >= 1")

    def game_data(self) -> dict:
        """This recipe's fields (to build another config on the same data)."""
        return {f.name: getattr(self, f.name) for f in fields(GameData)}


@dataclass(frozen=True, slots=True)
class TrainConfig(GameData):
    """One training run: model preset, data (`GameData`), schedule.

    Attributes:
        window: contiguous frames per training window (the last frame sees `window - 1` context frames).
        revisit_frames: extra far-earlier frames of the same place prepended to a revisit window.
        revisit_prob: fraction of windows that get revisit frames (when a matching earlier frame exists).
        revisit_nearest: take the earlier frames closest in pose (distance and heading, each relative to its
            limit) instead of a random draw among all that qualify, as spatial retrieval does at play time.
        context_aug_prob, context_aug_max: noise augmentation of the clean context copies.
        prev_aug_prob, prev_aug_max: noise augmentation of the previous-frame input (`prev_frame` models):
            at play time that input is the model's own last output, never a perfect frame, and a model
            trained only on real predecessors feeds its own small errors back until frames dissolve into
            noise (exposure bias; GameNGen's context-noise augmentation is the same cure).
        prev_drop_prob: share of frames whose previous-frame input is dropped (zeros, as at an episode's
            start), so the model must draw them from memory alone and learns to use its cache.
        prev_rollout_passes, prev_rollout_prob: self-forcing of that input: for a `prev_rollout_prob` share
            of the windows, every frame's previous-frame input is the model's own one-step prediction of
            that frame (no gradient), iterated `prev_rollout_passes` times so errors compound as in play
            (pass k feeds on pass k-1's predictions). The target stays the real frame, so the model learns
            to pull its own drift back toward the game.
        prev_rollout_context: with self-forcing, the clean (commit) copies the model attends to are its own
            predictions too (frames after the window's first), as the cache holds at play time.
        degrade_prob, degrade_blur_max, degrade_colour_max: share of windows whose conditioning frames (the
            clean copies attended to and the previous-frame inputs) are blurred and colour-cast as the
            model's own frames are, one draw per window (`world.dit.degrade`); the targets stay real.
        adv_weight: the adversarial term's share of the model's update (`world.dit.critic`): its gradient at
            the output layer is scaled to `adv_weight` times the x0 loss's. 0: no critic.
        adv_start: steps the critic trains alone before its verdict reaches the model.
        adv_level_min: the critic judges the noisy copies at this noise level or above (1.0: only the
            pure-noise copies, whose one-step predictions are the frames play shows).
        critic_width, critic_lr: the critic's first-layer channels and its Adam learning rate.
        top_level_prob: fraction of noisy copies at noise level 1 (pure noise), the level a one-step
            sampler starts and ends at; the rest spread over (0, 1] for multi-step sampling.
        pose_weight: weight of the pose-delta loss.
        warp_weight: weight of the warp alignment loss (`prev_warp` models): the warped previous frame
            alone against the target frame, on frames that have a previous frame.
        train_only: names of the network's top-level modules to train (e.g. `("flow_out",)`); the rest stay
            frozen at their warm-start weights. Empty: train everything.
        maps, drivers, episodes_per, episode_steps, tics_per_step: the data recipe (`GameData`).
    """

    model: str = "default"
    steps: int = 2400
    batch: int = 4
    lr: float = 8e-4
    warmup: int = 100
    weight_decay: float = 0.01
    window: int = 17
    revisit_frames: int = 2
    revisit_prob: float = 0.3
    revisit_nearest: bool = False
    revisit_min_gap: int = 24
    revisit_max_dist: float = 96.0
    revisit_max_angle: float = 30.0
    context_aug_prob: float = 0.5
    context_aug_max: float = 0.1
    prev_aug_prob: float = 0.0
    prev_aug_max: float = 0.0
    prev_drop_prob: float = 0.0
    prev_rollout_passes: int = 0
    prev_rollout_prob: float = 0.0
    prev_rollout_context: bool = False
    top_level_prob: float = 0.0
    degrade_prob: float = 0.0
    degrade_blur_max: float = 1.5
    degrade_colour_max: float = 0.1
    adv_weight: float = 0.0
    adv_start: int = 100
    adv_level_min: float = 0.0
    critic_width: int = 32
    critic_lr: float = 2e-4
    pose_weight: float = 0.1
    warp_weight: float = 0.0
    grad_clip: float = 1.0
    train_only: tuple[str, ...] = ()
    checkpoint_every: int = 50
    log_every: int = 10
    threads: int = 1

    def __post_init__(self) -> None:
        GameData.__post_init__(self)
        object.__setattr__(self, "train_only", tuple(self.train_only))
        if self.episode_steps < self.window:
            raise ValueError("episode_steps must be >= window")
        if self.window < 2:
            raise ValueError("window must be >= 2")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be >= 1")
        if not all(0.0 <= p <= 1.0 for p in (self.revisit_prob, self.context_aug_prob, self.prev_aug_prob,
                                             self.degrade_prob,
                                             self.prev_drop_prob, self.prev_rollout_prob, self.top_level_prob)):
            raise ValueError("probabilities must be in [0, 1]")
        if not (0.0 <= self.context_aug_max <= 1.0 and 0.0 <= self.prev_aug_max <= 1.0):
            raise ValueError("noise augmentation levels must be in [0, 1]")
        if self.degrade_blur_max < 0.0 or not 0.0 <= self.degrade_colour_max <= 1.0:
            raise ValueError("degrade_blur_max must be >= 0 and degrade_colour_max in [0, 1]")
        if self.adv_weight < 0.0 or self.adv_start < 0 or self.critic_width < 1 or self.critic_lr <= 0.0:
            raise ValueError("adv_weight and adv_start must be >= 0, critic_width >= 1 and critic_lr > 0")
        if not 0.0 <= self.adv_level_min <= 1.0:
            raise ValueError("adv_level_min must be in [0, 1]")
        if self.prev_rollout_passes < 0:
            raise ValueError("prev_rollout_passes must be >= 0")
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset '{self.model}'; choose from {sorted(MODEL_PRESETS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "TrainConfig":
        """A copy with the given fields replaced (None: keep); an unknown field name is a ValueError."""
        return config_with_overrides(self, kw)


# config flags whose module (named here) starts as the identity, so a checkpoint without it warm-starts exactly
GROWN_HEADS = {"prev_warp": "warp_out", "prev_flow": "flow_out"}
# config fields that change how the head composes its frame but no weight: free to differ at a warm start
COMPOSITION_FIELDS = ("prev_reveal", "prev_resample", "prev_padding")


def heads_to_grow(target: DiTConfig, source: DiTConfig) -> list[str] | None:
    """The `GROWN_HEADS` flags `target` has and `source` lacks, when that (and `COMPOSITION_FIELDS`) is
    all that tells them apart (`[]`: the same weights); None when they differ in anything else."""
    grown = [f for f in GROWN_HEADS if getattr(target, f) and not getattr(source, f)]
    composition = {f: getattr(source, f) for f in COMPOSITION_FIELDS}
    return grown if replace(target, **{f: False for f in grown}, **composition).hash() == source.hash() else None


MODEL_PRESETS: dict[str, DiTConfig] = {
    "default": DiTConfig(prev_frame=True),
    # the bundled model's stage 3: the default architecture plus the camera warp of the previous frame
    "warp": DiTConfig(prev_frame=True, prev_warp=True),
    # stage 3's warp plus a per-patch residual flow (parallax): the bundled model's stage 5 (train presets flow*)
    "flow": DiTConfig(prev_frame=True, prev_warp=True, prev_flow=True),
    # experiment, not shipped: stage 5's weights with the correction painting only what the warp reveals
    "reveal": DiTConfig(prev_frame=True, prev_warp=True, prev_flow=True, prev_reveal=True, prev_resample="bicubic"),
    "tiny": DiTConfig(patch=8, width=48, layers=2, heads=2, temporal_rope=8, row_rope=8, col_rope=8,
                      prev_frame=True, prev_warp=True, prev_flow=True),
}

# stage 3's recipe, which stage 4 and the experiments on the warp model vary
_WARP = TrainConfig(model="warp", top_level_prob=0.5, steps=2000, lr=3e-4, warmup=20, prev_drop_prob=0.5,
                    warp_weight=1.0)
# stage 4's recipe; the experiments after it vary it
_RECALL = replace(_WARP, steps=1000, lr=2e-4, revisit_frames=2, revisit_prob=0.5, revisit_nearest=True)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(top_level_prob=0.5),
    # stage 2 of the bundled model (`reverie train --config finetune --init default`): half the frames lose
    # their previous-frame input, so the model must draw them from its cache and learns to use its memory
    "finetune": TrainConfig(top_level_prob=0.5, steps=400, lr=2e-4, warmup=20, prev_drop_prob=0.5),
    # experiment, not shipped: the model's own predictions as previous frames. On the bundled model (600 CPU
    # steps) free play still dissolved into patch texture and the fidelity figures moved by < 0.5 dB
    "selfforce": TrainConfig(top_level_prob=0.5, steps=600, lr=1e-4, warmup=20, prev_rollout_passes=2,
                             prev_rollout_prob=0.75),
    # stage 3 (`reverie train --config warp --init default`): the stage-2 weights plus a zero-initialised
    # warp head (so training starts from the stage-2 model exactly), same recipe as stage 2
    "warp": _WARP,
    # stage 4 of the bundled model (`reverie train --config recall --init default`): half the windows that can
    # get earlier frames of their place get the 2 nearest in pose, so the model learns to redraw a place it
    # returns to from what memory brings back (stage 3 repainted it from the warped previous frame). With
    # every window and 4 frames (revisit_prob=1, revisit_frames=4) free play drifted into saturated colour
    "recall": _RECALL,
    # stage 5, first half (see `flow-recall`): stage 4 plus a zero-initialised per-patch flow head (`--init
    # default`; training starts from stage 4 exactly), the stage-4 recipe, 1500 steps (15 min), last 5 averaged. On
    # its own not shippable, though it gives the best replays so
    # far (tf 27.06, ar 25.16 / 24.10 / 23.10) and free runs (go-and-return, 256 frames: 23.45 dB against the
    # game; stage 4 22.39), but it repaints returns instead of recalling them: dual 23.84, window 24.04, full
    # 23.66 on revisits (loops of 40-60 steps out: 24.15 / 24.15 / 23.60), so memory would not matter. The same
    # 1500 steps without the flow (`--config recall --steps 1500`): tf 27.04, ar 25.19 / 23.98 / 22.80, free runs
    # 21.40, revisits dual 21.10, window 19.46
    "flow": replace(_RECALL, model="flow", steps=1500),
    # experiment, not shipped: the same with only the flow head trained (the stage-4 body, and its use of memory,
    # kept), 1000 steps: nothing moved (tf 26.98, ar16 23.83): the stage-4 features carry no per-patch motion
    # experiment, not shipped: stage 5 (`--init default`) taught to move its previous frame and paint only what
    # the move reveals (model preset `reveal`), stage 5's schedule at a fine-tuning rate. The copy keeps the room
    # sharp for a few frames, but the one-step fill of each revealed strip is a blur or a colour cast, and a few
    # turns hand the whole picture to it (docs/experiments.md)
    "reveal": replace(_RECALL, model="reveal", steps=1500, lr=1e-4),
    "flow-head": replace(_RECALL, model="flow", lr=1e-3, train_only=("flow_out",)),
    # stage 5, second half: `--init` the `flow` run, 9 in 10 windows with revisits, 600 steps. Recalls again
    # (revisits: dual 21.41, window 19.93) and keeps the replays (tf 27.08, ar 25.11 / 24.06 / 23.04), but
    # its go-and-return free runs fall to 21.37 dB against the game (stage 4: 22.39). The bundled stage 5 is
    # the 50/50 weight average of this run and stage 4 (`world.dit.release --weights 0.5 0.5`, the flow head
    # halved), which keeps what each does well (README). The same run relaxed back to revisit_prob 0.5 for 400
    # steps at lr 5e-5 lost free play altogether (17.98 dB against the game)
    "flow-recall": replace(_RECALL, model="flow", steps=600, lr=1e-4, revisit_prob=0.9),
    # experiment, not shipped: stage 5 (`--init default`) taught to undo the blur and colour cast of its own
    # frames. Free play (maze, 256 frames): realism 24.9 / 26.3 / 25.7 but sharpness 0.25-0.38 and, looked at,
    # a brown mush by frame 64 (docs/experiments.md)
    "degrade": replace(_RECALL, model="flow", steps=1500, lr=1e-4, degrade_prob=0.75, degrade_blur_max=2.0,
                       degrade_colour_max=0.15),
    # experiment, not shipped: stage 5 (`--init default`) with an adversarial critic beside the x0 loss
    # (`world.dit.critic`) judging the pure-noise copies, 3 in 4 windows self-forced 3 passes deep so it
    # judges frames made from the model's own history (1200 steps, 41 min). Free play (maze, 256 frames):
    # sharpness 0.43 / 0.43 / 0.42 but realism 22.1 / 18.9 / 17.0, turns 0.64 and, looked at, a blue-green
    # plaid of the patch grid by frame 64 (docs/experiments.md)
    "adversarial": replace(_RECALL, model="flow", steps=1200, lr=1e-4, adv_weight=1.0, adv_level_min=1.0,
                           critic_lr=4e-4, prev_rollout_passes=3, prev_rollout_prob=0.75,
                           prev_rollout_context=True),
    # experiment, not shipped: the stage-4 recipe on six training maps instead of two (`--init default`, 1500
    # steps, 5 episodes per map and driver). No better on the held-out map: tf 27.03, ar 24.81 / 23.50 / 22.54;
    # revisits dual 22.32, window 19.91, full 22.25; go-and-return free runs 21.43 (stage 4: 22.39)
    "maps": replace(_RECALL, steps=1500, episodes_per=5,
                    maps=("maze", "freedoom2-map01", "freedoom2-map03", "freedoom2-map04", "freedoom2-map05",
                          "freedoom2-map06")),
    # experiment, not shipped: stage 3 plus self-forcing of the previous frame and of the attended history
    # (`--init default`, 600 CPU steps, last 5 averaged). Free play keeps its brightness but still blurs within
    # ~8 frames; tf 26.98, ar 24.91 / 23.74 / 22.73 (16 frames: 0.2 dB below stage 3, 0.1 below stage 4)
    "warp-selfforce": replace(_WARP, steps=600, lr=1e-4, prev_rollout_passes=2, prev_rollout_prob=0.75,
                              prev_rollout_context=True),
    "tiny": TrainConfig(model="tiny", steps=4, batch=2, window=17, warmup=1, checkpoint_every=2, log_every=1,
                        warp_weight=1.0, maps=("maze",), drivers=("random",), episodes_per=1, episode_steps=60),
}


def model_config(name: str) -> DiTConfig:
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model config '{name}'; choose from {sorted(MODEL_PRESETS)}") from None


def train_config(name: str) -> TrainConfig:
    try:
        return TRAIN_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown train config '{name}'; choose from {sorted(TRAIN_PRESETS)}") from None
