import pytest
import torch

from reverie.kernels.quant import dequantize, dequantize_ref, pack_int4, quantize, quantize_ref, unpack_int4


def _groups(x, group):
    return x.reshape(*x.shape[:-1], x.shape[-1] // group, group)


@pytest.mark.parametrize("bits,group", [(8, 8), (8, 32), (4, 8), (4, 16), (4, 32)])
def test_round_trip_within_half_a_step(bits, group):
    x = torch.randn(3, 17, 32) * torch.rand(3, 17, 1) * 5
    x[0, 0] = 0.0  # an all-zero row round-trips exactly
    x[1, 1] = 2.5  # a constant row (scale 0 for int4)
    codes, scale, zero = quantize_ref(x, bits, group)
    assert scale.shape == (3, 17, 32 // group) and scale.dtype == torch.float32
    if bits == 8:
        assert codes.dtype == torch.int8 and codes.shape == x.shape and zero is None
    else:
        assert codes.dtype == torch.uint8 and codes.shape == (3, 17, 16) and zero.shape == scale.shape
    y = dequantize_ref(codes, scale, zero, bits, group)
    err = _groups((y - x).abs(), group)
    bound = scale[..., None] / 2 + 1e-6 * _groups(x.abs(), group).amax(-1, keepdim=True) + 1e-7
    assert (err <= bound).all()
    assert torch.equal(y[0, 0], x[0, 0])
    torch.testing.assert_close(y[1, 1], x[1, 1])


def test_error_bound_is_tight():
    x = torch.randn(64, 32)
    for bits in (8, 4):
        codes, scale, zero = quantize_ref(x, bits, 32)
        err = (dequantize_ref(codes, scale, zero, bits, 32) - x).abs().amax(-1)
        assert (err > 0.3 * scale[:, 0]).float().mean() > 0.5  # the bound is reached, not loose


def test_int4_packing_layout():
    codes = torch.tensor([[1, 2, 15, 0, 7, 8]], dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.tolist() == [[1 | (2 << 4), 15, 7 | (8 << 4)]]
    assert torch.equal(unpack_int4(packed), codes)
    x = torch.tensor([[0.0, 15.0, 1.0, 2.0]])
    c, s, z = quantize_ref(x, 4, 4)
    assert s.item() == 1.0 and z.item() == 0.0
    assert c.tolist() == [[0 | (15 << 4), 1 | (2 << 4)]]


def test_int8_symmetric_codes():
    x = torch.tensor([[-1.0, 0.5, 0.25, 1.0]])
    c, s, z = quantize_ref(x, 8, 4)
    assert z is None and s.item() == pytest.approx(1 / 127)
    assert c.tolist() == [[-127, 64, 32, 127]]


def test_dtype_and_public_entry_on_cpu():
    x = torch.randn(2, 4, 16, dtype=torch.bfloat16)
    codes, scale, zero = quantize(x, 4, 8)
    ref = quantize_ref(x, 4, 8)
    assert torch.equal(codes, ref[0]) and torch.equal(scale, ref[1])
    y = dequantize(codes, scale, zero, 4, 8, torch.bfloat16)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape


@pytest.mark.parametrize("bits,group,d", [(3, 8, 16), (8, 5, 16), (4, 0, 16), (4, 1, 15)])
def test_bad_layouts_raise(bits, group, d):
    with pytest.raises(ValueError):
        quantize_ref(torch.randn(2, d), bits, group)


def test_int4_needs_zero():
    c, s, _ = quantize_ref(torch.randn(2, 8), 4, 8)
    with pytest.raises(ValueError):
        dequantize_ref(c, s, None, 4, 8)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([8, 4]), groups=st.integers(1, 4), group=st.sampled_from([2, 4, 8, 16]),
       rows=st.integers(1, 6), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_round_trip_bound_property(bits, groups, group, rows, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, groups * group, generator=g) * scale
    codes, s, z = quantize_ref(x, bits, group)
    err = _groups((dequantize_ref(codes, s, z, bits, group) - x).abs(), group)
    bound = s[..., None] / 2 + 4e-7 * _groups(x.abs(), group).amax(-1, keepdim=True)
    assert (err <= bound).all()
