"""Triton kernels. Importing anything here imports `triton`; `kernels.backends` does so only on demand.

Each module holds one concept's kernels next to a thin launcher; the torch oracles live in the parent
modules (`kernels.attend.attend_ref`, `kernels.scores.*_ref`, `kernels.quant.*_ref`).
"""
