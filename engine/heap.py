"""`settle_heap()`: keep Python's cyclic garbage collector out of the frame loop.

A full (generation 2) collection walks every tracked object: the imported modules, the models' modules
and parameters, everything built at start-up. Measured on the 2-core CPU with the default model and two
sessions: one such pass every few hundred frames, 92-106 ms each, a visible hitch for a player and up to
~1.5 ms per frame on a 64-frame timing window of a bench. `gc.freeze()` after start-up moves what is
alive then into a permanent generation that collections skip, so later passes only walk what was made
since (young collections are unaffected; the frozen objects were long-lived anyway).

Called once the models are loaded: by the server's and gateway's loop before it starts
(`engine.poll_loop.PollLoop.serve_forever`) and by the benches that time frames in-process, so they time
what a served player gets.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect what start-up left behind, then freeze every object alive now out of later collections."""
    gc.collect()
    gc.freeze()
