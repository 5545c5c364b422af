"""Shadow mode's retained mass (`engine.bench.shadow._retained`): what a policy's view still shows."""

import torch

from reverie.engine.bench.shadow import _retained
from reverie.kernels.view import KVSegment, KVView, RopeSpec


def _seg(s, index=None, bias=None):
    return KVSegment(k=torch.zeros(2, s, 4), v=torch.zeros(2, s, 4), pos=torch.arange(s), index=index, bias=bias)


def test_retained_mass_counts_only_the_slots_an_index_gathers_and_skips_mean_tokens():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 6 + 2, generator=g), -1)  # 6 cached slots, 2 scratch
    ids = torch.arange(6)
    scratch = _seg(2)
    picked = torch.tensor([0, 3, 4])
    means = _seg(2, index=torch.tensor([1]), bias=torch.zeros(2))  # frame means: no slot of their own
    view = KVView(segments=(_seg(6, index=picked), means, scratch), q_pos=torch.zeros(3), rope=RopeSpec(0))
    want = (probs[:, :, picked].sum(-1) + probs[:, :, 6:].sum(-1)).mean()
    torch.testing.assert_close(_retained(probs, ids, ids, view), want)
    whole = KVView(segments=(_seg(6), scratch), q_pos=torch.zeros(3), rope=RopeSpec(0))
    torch.testing.assert_close(_retained(probs, ids, ids, whole), torch.tensor(1.0))
    hidden = KVView(segments=(_seg(6, bias=torch.tensor([0.0, -float("inf")] * 3)), scratch),
                    q_pos=torch.zeros(3), rope=RopeSpec(0))
    torch.testing.assert_close(_retained(probs, ids, ids, hidden),
                               (probs[:, :, [0, 2, 4]].sum(-1) + probs[:, :, 6:].sum(-1)).mean())
