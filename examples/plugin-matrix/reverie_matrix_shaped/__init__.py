"""A Matrix-Game-2.0-shaped plug-in for reverie (see model.py)."""
