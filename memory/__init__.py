"""The KV cache under a fixed byte budget, and every published memory policy as a configuration of it.

    from memory import MemoryManager
    mem = MemoryManager.create(spec, policy="window", budget_frac=0.25, horizon_frames=256)

See `memory.manager` for the loop contract and `memory.policies` for the named policies.
"""

from memory.config import PolicyConfig
from memory.errors import BudgetError, UnknownPolicyError
from memory.manager import MemoryManager
from memory.policies import POLICIES, available_policies, register_policy, resolve

__all__ = ["MemoryManager", "BudgetError", "UnknownPolicyError", "PolicyConfig", "POLICIES",
           "available_policies", "register_policy", "resolve"]
