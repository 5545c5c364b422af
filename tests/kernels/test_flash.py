"""The flash-attn backend's own logic (layout, per-segment RoPE, log-sum-exp merge), with a torch stand-in
for `flash_attn_func` so it runs on the CPU; the real library is exercised in test_fused_gpu.py."""

import math
import sys
import types

import pytest
import torch

from reverie.kernels import attend_ref
from reverie.kernels.testing import random_view


def _fake_flash_attn_func(q, k, v, return_attn_probs=False):
    """flash_attn_func's contract on [B, S, H, D] inputs: (out, softmax_lse [B, H, Sq], probs)."""
    qh, kh, vh = (x.transpose(1, 2).float() for x in (q, k, v))
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(q.shape[-1])
    lse = torch.logsumexp(logits, dim=-1)
    out = (torch.softmax(logits, dim=-1) @ vh).transpose(1, 2).to(q.dtype)
    return (out, lse, None) if return_attn_probs else out


@pytest.fixture
def fake_flash(monkeypatch):
    module = types.ModuleType("flash_attn")
    module.flash_attn_func = _fake_flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn", module)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_segments_merge_by_log_sum_exp(fake_flash, dtype):
    from reverie.kernels.flash import attend_flash

    q, view = random_view(3, 32, 6, 20, dtype=dtype)
    out = attend_flash(q, view)
    assert out.dtype == dtype and out.shape == q.shape
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.float(), attend_ref(q, view), atol=tol, rtol=tol)


def test_single_segment_passes_through(fake_flash):
    from reverie.kernels import KVView
    from reverie.kernels.flash import attend_flash

    q, view = random_view(2, 16, 4, 8)
    one = KVView(view.segments[:1], view.q_pos, view.rope)
    torch.testing.assert_close(attend_flash(q, one), attend_ref(q, one), atol=1e-5, rtol=1e-5)
