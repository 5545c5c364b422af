"""Where a command runs: `--device auto|cpu|cuda|cuda:N`, checked before any work starts."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is malformed, or names hardware this process cannot use."""


def resolve_device(name: str) -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU; any other name must be a device
    this process can use now (a clear `DeviceError` otherwise, e.g. `cuda` on a machine without CUDA)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"'{name}' is not a device name (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device '{name}' is not supported (auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{name}' asked for, but CUDA is not available in this process "
                              "(a CPU-only torch build, or no GPU visible)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' asked for, but only {torch.cuda.device_count()} CUDA device(s) "
                              "are visible")
    return device
