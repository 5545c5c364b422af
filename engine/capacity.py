"""How much memory a server lets its sessions hold together when the operator does not say.

The default is `DEFAULT_TOTAL_FRACTION` of the memory free when the server starts: the CUDA device's free
memory (`torch.cuda.mem_get_info`) when the model runs on CUDA, else the machine's available memory
(`psutil.virtual_memory().available`). Everything a session holds is charged against it, host memory
included (`memory.footprint.session_bytes`), so on a GPU the bound is conservative.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOTAL_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class TotalBudget:
    """The bytes all sessions may hold together, and where the figure comes from (said in stats)."""

    bytes: int
    source: str

    def __post_init__(self) -> None:
        if self.bytes <= 0:
            raise ValueError(f"a total budget must be positive, got {self.bytes}")


def total_budget(total_bytes: int | None, device, fraction: float = DEFAULT_TOTAL_FRACTION) -> TotalBudget:
    """`total_bytes` when given, else `fraction` of the free memory of `device` (see the module docstring)."""
    if total_bytes is not None:
        return TotalBudget(int(total_bytes), "set by the operator (--total-budget-bytes)")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the total budget fraction must be in (0, 1], got {fraction}")
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        where = f"free memory of {device} ({free / 2**30:.1f} GiB at start)"
    else:
        import psutil

        free = psutil.virtual_memory().available
        where = f"available host memory ({free / 2**30:.1f} GiB at start)"
    return TotalBudget(max(1, int(fraction * free)), f"{fraction:.0%} of the {where}")
