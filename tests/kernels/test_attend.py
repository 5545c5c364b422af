import math

import pytest
import torch

from reverie.kernels import KVSegment, KVView, RopeSpec, attend, attend_ref
from reverie.kernels.attend import attend_torch
from reverie.kernels.quant import dequantize_ref
from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.testing import random_view


def _naive(q, view):
    """Independent float64 formulation: explicit logits, explicit softmax."""
    ks, vs, bs = [], [], []
    h, _, d = q.shape
    for seg in view.segments:
        k, v = seg.k, seg.v
        if seg.bits:
            k = dequantize_ref(k, seg.k_scale, seg.k_zero, seg.bits, seg.group, torch.float64)
            v = dequantize_ref(v, seg.v_scale, seg.v_zero, seg.bits, seg.group, torch.float64)
        idx = seg.index if seg.index is not None else torch.arange(seg.pos.shape[0])
        k = apply_rope_ref(k.double()[:, idx], seg.pos[idx], view.rope)
        b = torch.zeros(h, len(idx), dtype=torch.float64)
        if seg.bias is not None:
            b = b + seg.bias.double()[..., idx]
        ks.append(k), vs.append(v.double()[:, idx]), bs.append(b)
    k, v, b = torch.cat(ks, 1), torch.cat(vs, 1), torch.cat(bs, 1)
    qr = apply_rope_ref(q.double(), view.q_pos, view.rope)
    logits = qr @ k.transpose(1, 2) / math.sqrt(d) + b[:, None, :]
    return torch.softmax(logits, dim=-1) @ v


@pytest.mark.parametrize("bits", [0, 8, 4])
@pytest.mark.parametrize("gather,bias", [(None, None), (10, "slot"), (12, "head"), (None, "head")])
def test_reference_matches_naive(bits, gather, bias):
    q, view = random_view(3, 32, 5, 20, bits=bits, group=16, gather=gather, bias=bias)
    torch.testing.assert_close(attend_ref(q, view).double(), _naive(q, view), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(attend(q, view), attend_ref(q, view), atol=2e-5, rtol=1e-5)


def test_single_plain_segment_fast_path_equals_general_path():
    q, view = random_view(2, 16, 4, 9)
    seg = view.segments[0]
    fast = KVView((seg,), view.q_pos, view.rope)
    general = KVView((KVSegment(seg.k, seg.v, seg.pos, bias=torch.zeros(9)),), view.q_pos, view.rope)
    torch.testing.assert_close(attend(q, fast), attend(q, general))
    torch.testing.assert_close(attend(q, fast).double(), _naive(q, fast), atol=2e-5, rtol=1e-5)


def test_merge_identity_log_count_bias():
    """A key present n times equals that key once with bias log(n) (and its values averaged)."""
    g = torch.Generator().manual_seed(1)
    h, d = 2, 16
    q = torch.randn(h, 3, d, generator=g)
    k, v = torch.randn(h, 4, d, generator=g), torch.randn(h, 4, d, generator=g)
    pos = torch.tensor([0, 1, 2, 3])
    n = 5
    dup_k = torch.cat([k, k[:, 2:3].expand(h, n - 1, d)], 1)
    dup_v = torch.cat([v, v[:, 2:3].expand(h, n - 1, d)], 1)
    dup = KVView((KVSegment(dup_k, dup_v, torch.cat([pos, pos[2:3].expand(n - 1)])),), torch.full((3,), 4), RopeSpec(4))
    merged = KVView((KVSegment(k, v, pos, bias=torch.tensor([0.0, 0.0, math.log(n), 0.0])),), dup.q_pos, dup.rope)
    torch.testing.assert_close(attend(q, merged), attend(q, dup), atol=1e-6, rtol=1e-5)


def test_shifting_every_position_leaves_attention_unchanged():
    q, view = random_view(2, 32, 4, 12, bits=8, group=16, gather=7, bias="slot")
    shift = 1000
    shifted = KVView(
        tuple(KVSegment(**{f: getattr(s, f) for f in s.__slots__} | {"pos": s.pos + shift}) for s in view.segments),
        view.q_pos + shift, view.rope)
    torch.testing.assert_close(attend(q, shifted), attend(q, view), atol=1e-5, rtol=1e-5)
    moved = KVView((view.segments[0], KVSegment(**{f: getattr(view.segments[1], f) for f in view.segments[1].__slots__} | {"pos": view.segments[1].pos + 3})), view.q_pos, view.rope)
    assert not torch.allclose(attend(q, moved), attend(q, view), atol=1e-4)


def test_rope_at_read_equals_rotating_stored_keys():
    q, view = random_view(2, 16, 3, 8)
    spec = view.rope
    pre = KVView(
        tuple(KVSegment(apply_rope_ref(s.k, s.pos, spec), s.v, s.pos) for s in view.segments),
        view.q_pos, RopeSpec(0))
    q_pre = apply_rope_ref(q, view.q_pos, spec)
    torch.testing.assert_close(attend(q_pre, pre), attend(q, view), atol=1e-6, rtol=1e-5)


def test_gather_equals_slicing():
    q, view = random_view(2, 16, 3, 10, bits=4, group=8, gather=6, bias="head")
    seg = view.segments[0]
    idx = seg.index
    sliced = KVSegment(
        k=seg.k[:, idx], v=seg.v[:, idx], pos=seg.pos[idx], bias=seg.bias[:, idx], k_scale=seg.k_scale[:, idx],
        k_zero=seg.k_zero[:, idx], v_scale=seg.v_scale[:, idx], v_zero=seg.v_zero[:, idx], bits=4, group=8)
    torch.testing.assert_close(attend(q, KVView((sliced, view.segments[1]), view.q_pos, view.rope)), attend(q, view))


def test_minus_inf_bias_hides_a_slot_per_head():
    q, view = random_view(2, 16, 3, 6, bias="slot")
    seg = view.segments[0]
    hide = torch.zeros(2, 6)
    hide[0, 2] = float("-inf")
    hidden = KVView((KVSegment(seg.k, seg.v, seg.pos, bias=hide), view.segments[1]), view.q_pos, view.rope)
    keep = torch.tensor([0, 1, 3, 4, 5])
    dropped = KVView((KVSegment(seg.k, seg.v, seg.pos, index=keep), view.segments[1]), view.q_pos, view.rope)
    out = attend(q, hidden)
    torch.testing.assert_close(out[0], attend(q, dropped)[0])
    assert not torch.allclose(out[1], attend(q, dropped)[1])


def test_low_precision_stays_close_and_keeps_dtype():
    q, view = random_view(2, 32, 4, 16, bits=8, group=16, bias="slot", dtype=torch.bfloat16)
    out = attend(q, view)
    assert out.dtype == torch.bfloat16
    assert (out.float() - attend_ref(q, view)).abs().max() < 0.05
    assert attend_torch(q, view, upcast=True).dtype == torch.float32


def test_empty_segments_are_skipped():
    q, view = random_view(2, 16, 3, 5)
    empty = KVSegment(torch.zeros(2, 0, 16), torch.zeros(2, 0, 16), torch.zeros(0, dtype=torch.int64))
    torch.testing.assert_close(attend(q, KVView((empty,) + view.segments, view.q_pos, view.rope)), attend(q, view))


@pytest.mark.parametrize("mutate,match", [
    (lambda q, s: (q[0], s), "q must be"),
    (lambda q, s: (q, s | {"k": s["k"][:, :-1]}), "segment 0: k"),
    (lambda q, s: (q, s | {"bias": torch.zeros(3)}), "bias"),
    (lambda q, s: (q, s | {"bits": 8}), "quantized"),
])
def test_bad_views_raise(mutate, match):
    q, view = random_view(2, 16, 3, 5)
    seg = view.segments[0]
    q2, fields = mutate(q, {f: getattr(seg, f) for f in seg.__slots__})
    with pytest.raises(ValueError, match=match):
        attend(q2, KVView((KVSegment(**fields), view.segments[1]), view.q_pos, view.rope))
    with pytest.raises(ValueError, match="no visible"):
        attend(q, KVView((), view.q_pos, view.rope))


def test_the_gather_workspace_is_reused_and_never_aliases_an_output():
    """The CPU path gathers multi-segment views into one per-thread buffer: a second call of the same or a
    smaller size allocates nothing, leaves the first call's output intact, and matches the oracle."""
    from reverie.kernels.attend import _WORKSPACE

    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        q1, v1 = random_view(2, 32, 4, 96, generator=g)
        q2, v2 = random_view(2, 32, 4, 40, generator=g)
        out1 = attend_torch(q1, v1)
        kept = out1.clone()
        ptr = _WORKSPACE.flat[torch.float32].data_ptr()
        out2 = attend_torch(q2, v2)
        assert _WORKSPACE.flat[torch.float32].data_ptr() == ptr
        assert torch.equal(out1, kept)
        for q, view, out in ((q1, v1, out1), (q2, v2, out2)):
            torch.testing.assert_close(out, attend_ref(q, view), atol=1e-5, rtol=1e-5)

