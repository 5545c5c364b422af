"""The KV cache under a fixed byte budget, and every published memory policy as a configuration of it.

    from reverie.memory import MemoryManager
    mem = MemoryManager.create(spec, policy="dual", budget_frac=0.25, horizon_frames=256)
    mem.begin_chunk(pose=(x, y, angle_degrees), events=())
    view = mem.view(layer, q, k, v)      # -> kernels.view.KVView; attend with kernels.attend(q, view)
    mem.commit(layer, k, v, q)           # commit pass only
    mem.end_chunk()

Policies (`available_policies()`; each a `PolicyConfig` in `memory.policies`, overridable per field):
`full` (reference), `window` (Self-Forcing/LongLive), `deep-sink` (Deep Forcing), `h2o`, `salience`
(PaFu-KV), `headwise` (Forcing-KV), `tempcache` (merged tokens), `quant` (MiKV int4 spill), `spatial`
(pose-indexed retrieval) and `dual`, the default (sink + salience-pruned recent + spatial retrieval).

Modules: `manager` (the loop contract), `layout` (budget planning), `regions`/`pools`/`store` (preallocated
per-layer stores), `positions` (RoPE position policies), `scorers`, `merge`, `heads`, `spatial`,
`salience` (the learned head and its distillation targets), `footprint` (every byte a session will hold,
before it is built: `session_bytes`), `measure` (the bytes a live session really holds).
"""

from reverie.memory.config import PolicyConfig
from reverie.memory.errors import BudgetError, UnknownPolicyError
from reverie.memory.footprint import Footprint, session_bytes
from reverie.memory.manager import MemoryManager
from reverie.memory.policies import POLICIES, available_policies, register_policy, resolve

__all__ = ["MemoryManager", "BudgetError", "UnknownPolicyError", "PolicyConfig", "POLICIES",
           "available_policies", "register_policy", "resolve", "Footprint", "session_bytes"]
