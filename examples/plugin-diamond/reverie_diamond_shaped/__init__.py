"""A DIAMOND-shaped plug-in for reverie (see model.py)."""
