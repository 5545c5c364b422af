"""The default neural game: a small block-causal DiT over 8x8 frame patches, trained on Doom rollouts.

`world.dit.default.build` is the registry factory for `"default"`; `world.dit.config` holds the model and
training presets; `world.dit.train` the training loop; `world.dit.data` the rollout windows it trains on.
"""
