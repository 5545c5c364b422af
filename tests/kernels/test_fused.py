"""Every Triton kernel against its torch oracle, through Triton's interpreter on the CPU.

Tolerance follows flash-attention's rule: the kernel's max error against the float32 oracle is at most a
small multiple of the error of a same-dtype torch implementation, plus a small atol.
"""

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch

from reverie.kernels import KVSegment, KVView, RopeSpec, attend, attend_ref, attention_backend, backends
from reverie.kernels.quant import dequantize, dequantize_ref, quantize, quantize_ref
from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.scores import (participation_scores, participation_scores_ref, segment_similarity,
                            segment_similarity_ref, token_cosine_ref)
from reverie.kernels.testing import make_segment, random_view

HAVE_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETER_HERE = HAVE_TRITON and not torch.cuda.is_available() and backends.interpreter_ready()
pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
here = pytest.mark.skipif(not INTERPRETER_HERE, reason="interpreter unusable in this process; see test_suite_in_subprocess")


@pytest.fixture(autouse=True, scope="module")
def interpreted():
    """TRITON_INTERPRET=1 for this module only (kernels pick their mode at launch)."""
    with pytest.MonkeyPatch.context() as mp:
        if INTERPRETER_HERE:
            mp.setenv("TRITON_INTERPRET", "1")
        backends.reset()
        yield
    backends.reset()


def test_suite_in_subprocess():
    if INTERPRETER_HERE:
        pytest.skip("the interpreter tests ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def _attend_same_dtype(q, view):
    """A plain torch implementation in the input dtype (every op rounds to it): the baseline error."""
    dt, d = q.dtype, q.shape[-1]
    ks, vs, bs = [], [], []
    for seg in view.segments:
        k, v = seg.k, seg.v
        if seg.bits:
            k = dequantize_ref(k, seg.k_scale, seg.k_zero, seg.bits, seg.group, dt)
            v = dequantize_ref(v, seg.v_scale, seg.v_zero, seg.bits, seg.group, dt)
        idx = seg.index if seg.index is not None else torch.arange(seg.pos.shape[0])
        ks.append(apply_rope_ref(k[:, idx].to(dt), seg.pos[idx], view.rope))
        vs.append(v[:, idx].to(dt))
        b = torch.zeros(q.shape[0], len(idx), dtype=dt)
        bs.append(b + seg.bias[..., idx].to(dt) if seg.bias is not None else b)
    qr = apply_rope_ref(q, view.q_pos, view.rope)
    logits = (qr @ torch.cat(ks, 1).transpose(1, 2)) * (1 / math.sqrt(d)) + torch.cat(bs, 1)[:, None, :]
    return torch.softmax(logits, dim=-1) @ torch.cat(vs, 1)


def _with_pos(seg, pos):
    return KVSegment(**{f: getattr(seg, f) for f in seg.__slots__} | {"pos": pos})


@here
@pytest.mark.parametrize("bits", [0, 8, 4])
@pytest.mark.parametrize("gather,bias", [(None, None), (9, "slot"), (13, "head")])
def test_attention_float32_matches_reference(bits, gather, bias):
    from reverie.kernels.fused.attention import attend_triton

    q, view = random_view(2, 32, 5, 20, bits=bits, group=16, gather=gather, bias=bias)
    torch.testing.assert_close(attend_triton(q, view), attend_ref(q, view), atol=2e-6, rtol=1e-5)


@here
@pytest.mark.parametrize("dtype,rtol", [(torch.float16, 2.0), (torch.bfloat16, 4.0)])
@pytest.mark.parametrize("bits", [0, 8, 4])
def test_attention_low_precision_flash_rule(dtype, rtol, bits):
    """rtol 2 as in flash-attention; 4 for bf16 because the interpreter truncates (not rounds) to bf16."""
    from reverie.kernels.fused.attention import attend_triton

    q, view = random_view(2, 32, 20, 40, bits=bits, group=16, gather=30, bias="head", dtype=dtype)
    ref = attend_ref(q, view)
    err = (attend_triton(q, view).float() - ref).abs().max().item()
    err_pt = (_attend_same_dtype(q, view).float() - ref).abs().max().item()
    assert err <= rtol * err_pt + 1e-4, (err, err_pt)


@here
def test_attention_many_tiles_segments_and_partial_blocks():
    from reverie.kernels.fused.attention import attend_triton

    g = torch.Generator().manual_seed(3)
    h, d, nq = 2, 16, 37
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    tier_f = make_segment(rnd(h, 50, d), rnd(h, 50, d), torch.arange(50) // 10, bias=torch.rand(h, 50, generator=g))
    tier_4 = make_segment(rnd(h, 70, d), rnd(h, 70, d), torch.arange(70) // 10 + 5, bits=4, group=8,
                          index=torch.randperm(70, generator=g)[:45])
    empty = make_segment(torch.zeros(h, 0, d), torch.zeros(h, 0, d), torch.zeros(0, dtype=torch.int64), bits=8, group=8)
    scratch = make_segment(rnd(h, nq, d), rnd(h, nq, d), torch.full((nq,), 13))
    view = KVView((tier_f, empty, tier_4, scratch), torch.full((nq,), 13), RopeSpec(d))
    q = rnd(h, nq, d)
    out = attend_triton(q, view, block_m=16, block_n=16)
    torch.testing.assert_close(out, attend_ref(q, view), atol=2e-6, rtol=1e-5)


@here
def test_attention_carries_fully_hidden_segments():
    """A head that sees nothing in the first segment (all -inf) still gets the right softmax overall."""
    from reverie.kernels.fused.attention import attend_triton

    q, view = random_view(2, 16, 4, 6)
    seg = view.segments[0]
    bias = torch.zeros(2, 6)
    bias[1] = float("-inf")
    hidden = KVView((KVSegment(seg.k, seg.v, seg.pos, bias=bias), view.segments[1]), view.q_pos, view.rope)
    out = attend_triton(q, hidden)
    torch.testing.assert_close(out, attend_ref(q, hidden), atol=2e-6, rtol=1e-5)
    alone = KVView(view.segments[1:], view.q_pos, view.rope)
    torch.testing.assert_close(out[1], attend_ref(q, alone)[1], atol=2e-6, rtol=1e-5)


@here
@pytest.mark.parametrize("rope_dims", [0, 32])
def test_attention_rope_extremes_and_position_shift(rope_dims):
    from reverie.kernels.fused.attention import attend_triton

    q, view = random_view(2, 32, 4, 12, bits=8, group=32, rope_dims=rope_dims)
    out = attend_triton(q, view)
    torch.testing.assert_close(out, attend_ref(q, view), atol=2e-6, rtol=1e-5)
    shifted = KVView(tuple(_with_pos(s, s.pos + 500) for s in view.segments), view.q_pos + 500, view.rope)
    torch.testing.assert_close(attend_triton(q, shifted), out, atol=5e-5, rtol=1e-4)


@here
def test_attention_merge_identity():
    from reverie.kernels.fused.attention import attend_triton

    g = torch.Generator().manual_seed(2)
    h, d, n = 2, 16, 4
    q, k, v = (torch.randn(h, m, d, generator=g) for m in (3, 3, 3))
    pos = torch.tensor([0, 1, 2])
    dup = KVView((KVSegment(torch.cat([k, k[:, 1:2].expand(h, n - 1, d)], 1), torch.cat([v, v[:, 1:2].expand(h, n - 1, d)], 1),
                            torch.cat([pos, pos[1:2].expand(n - 1)])),), torch.full((3,), 3), RopeSpec(8))
    merged = KVView((KVSegment(k, v, pos, bias=torch.tensor([0.0, math.log(n), 0.0])),), dup.q_pos, dup.rope)
    torch.testing.assert_close(attend_triton(q, merged), attend_triton(q, dup), atol=2e-6, rtol=1e-5)


@here
def test_public_attend_dispatches_to_triton(monkeypatch):
    import reverie.kernels.fused.attention as fused

    calls = []
    real = fused.attend_triton
    monkeypatch.setattr(fused, "attend_triton", lambda q, view: calls.append(1) or real(q, view))
    backends._load_target.cache_clear()
    q, view = random_view(2, 16, 3, 8, bits=4, group=8, bias="slot")
    try:
        with attention_backend("triton"):
            out = attend(q, view)
    finally:
        backends._load_target.cache_clear()
    assert calls == [1]
    torch.testing.assert_close(out, attend_ref(q, view), atol=2e-6, rtol=1e-5)


@here
@pytest.mark.parametrize("bits,group", [(8, 8), (8, 32), (4, 4), (4, 16)])
def test_quantize_kernels_match_reference(bits, group):
    from reverie.kernels.fused.quant import dequantize_triton, quantize_triton

    x = torch.randn(2, 19, 32) * 3
    x[0, 0] = 0.0
    codes, scale, zero = quantize_triton(x, bits, group)
    ref = quantize_ref(x, bits, group)
    assert codes.dtype == ref[0].dtype and torch.equal(codes, ref[0]) and torch.equal(scale, ref[1])
    assert (zero is None) == (ref[2] is None) and (zero is None or torch.equal(zero, ref[2]))
    y = dequantize_triton(codes, scale, zero, bits, group)
    assert torch.equal(y, dequantize_ref(codes, scale, zero, bits, group))
    yb = dequantize_triton(codes, scale, zero, bits, group, torch.bfloat16)
    assert yb.dtype == torch.bfloat16
    assert ((yb.float() - y).abs() <= y.abs() * 2 ** -7 + 1e-30).all()  # within one bf16 ulp
    with attention_backend("triton"):
        assert torch.equal(quantize(x, bits, group)[0], ref[0])
        assert torch.equal(dequantize(*ref, bits, group), y)


@here
def test_quantize_kernel_rejects_non_power_of_two():
    from reverie.kernels.fused.quant import quantize_triton

    with pytest.raises(ValueError, match="power-of-two"):
        quantize_triton(torch.randn(2, 24), 8, 8)


@here
@pytest.mark.parametrize("rope", [None, RopeSpec(8, theta=100.0)])
@pytest.mark.parametrize("sum_heads", [False, True])
def test_participation_scores_kernel(rope, sum_heads):
    from reverie.kernels.fused.scores import participation_scores_triton

    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(3, 6, 24, generator=g), torch.randn(3, 70, 24, generator=g)
    kw = dict(q_pos=torch.arange(6) + 20, k_pos=torch.arange(70) // 7, rope=rope, sum_heads=sum_heads,
              scale=1 / (math.sqrt(24) * 3))
    got = participation_scores_triton(q, k, **kw)
    torch.testing.assert_close(got, participation_scores_ref(q, k, **kw), atol=1e-5, rtol=1e-5)
    with attention_backend("triton"):
        torch.testing.assert_close(participation_scores(q, k, **kw), got)


@here
@pytest.mark.parametrize("per_head", [False, True])
def test_segment_similarity_kernel(per_head):
    from reverie.kernels.fused.scores import token_cosine_triton

    g = torch.Generator().manual_seed(6)
    frames = torch.randn(3, 4, 45, 20, generator=g, dtype=torch.float32).to(torch.bfloat16)
    torch.testing.assert_close(token_cosine_triton(frames, per_head=per_head),
                               token_cosine_ref(frames, per_head=per_head), atol=1e-6, rtol=1e-5)
    with attention_backend("triton"):
        got = segment_similarity(frames, 6, per_head=per_head)
    torch.testing.assert_close(got, segment_similarity_ref(frames, 6, per_head=per_head), atol=1e-6, rtol=1e-5)
