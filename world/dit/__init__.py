"""The default neural game: a small block-causal DiT over frame patches, trained on Doom rollouts.

* `world.dit.default`: `build` (the registry factory for `"default"`) and `DiTWorldModel`, the
  `WorldModel` contract around the network. Latents are 16x16 RGB patches of the 64x48 frame in [-1, 1]
  (12 tokens per frame). Bundled weights: `world/dit/weights/default.safetensors` (+ `.json`: config,
  config hash, training command history, sampler steps).
* `world.dit.network`: `DiTNet`: per-frame adaLN-Zero conditioning on (action, noise level), spatial RoPE
  applied in the model, temporal RoPE applied at read time by `kernels.attend` (keys are cached before it),
  an optional pose head (per-frame motion: forward, left, dangle) and an optional previous-frame path
  (`prev_frame`: the previous clean frame is concatenated to each patch and x0 is predicted as a
  correction of it; the engine passes it as `context`, `ModelSpec.frame_context == 1`).
* `world.dit.train` / `world.dit.data`: diffusion forcing with a clean commit copy of every frame
  (`reverie train`), windows of 17 frames plus revisit frames of the same place.
* `world.dit.renderer` / `world.dit.render_train`: the optional second stage, a pixel-space EDM U-Net that
  draws each frame from the DiT's one-step guess (`reverie train --config render`), bundled into the same
  checkpoint under `renderer.*`.
* `world.dit.runs`: a training run's bookkeeping (paths, checkpoints and resume, snapshots, schedule),
  shared by both trainers.
* `world.dit.release`: bundle a trained checkpoint as the package default.
"""
