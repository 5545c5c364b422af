import math

import pytest
import torch

from reverie.kernels.rope import apply_rope, apply_rope_ref, rope_tables
from reverie.kernels.view import RopeSpec


def _complex_rope(x, pos, dims, theta):
    """Independent formulation: pairs (j, j + half) as complex numbers times exp(i * angle)."""
    half = dims // 2
    out = x.clone().double()
    for j in range(half):
        freq = theta ** (-2.0 * j / dims)
        z = torch.complex(x[..., j].double(), x[..., j + half].double())
        rot = z * torch.exp(1j * pos.double() * freq)
        out[..., j], out[..., j + half] = rot.real, rot.imag
    return out


@pytest.mark.parametrize("dims", [2, 8, 16])
def test_matches_complex_rotation(dims):
    x = torch.randn(3, 7, 16)
    pos = torch.tensor([0, 1, 2, 5, 9, 100, 4000])
    got = apply_rope_ref(x, pos, RopeSpec(dims, theta=500.0))
    torch.testing.assert_close(got.double(), _complex_rope(x, pos, dims, 500.0), atol=1e-5, rtol=1e-5)


def test_pass_through_channels_and_norm():
    x = torch.randn(2, 5, 12)
    y = apply_rope_ref(x, torch.arange(5) * 3, RopeSpec(4))
    assert torch.equal(y[..., 4:], x[..., 4:])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    assert torch.equal(apply_rope_ref(x, torch.arange(5), RopeSpec(0)), x)


def test_dot_product_depends_on_position_difference_only():
    spec = RopeSpec(8)
    q, k = torch.randn(1, 1, 8), torch.randn(1, 1, 8)
    def score(pq, pk):
        return (apply_rope_ref(q, torch.tensor([pq]), spec) * apply_rope_ref(k, torch.tensor([pk]), spec)).sum()
    torch.testing.assert_close(score(10, 3), score(107, 100))
    assert not torch.allclose(score(10, 3), score(10, 4))


def test_tables_and_out_buffer():
    spec = RopeSpec(6, theta=100.0)
    pos = torch.tensor([2, 3])
    cos, sin = rope_tables(pos, spec)
    assert cos.shape == (2, 3)
    assert math.isclose(cos[1, 1].item(), math.cos(3 * 100.0 ** (-2 / 6)), rel_tol=1e-6)
    x = torch.randn(2, 2, 8)
    buf = torch.zeros(2, 4, 8)
    apply_rope(x, cos, sin, 6, out=buf[:, 1:3])
    torch.testing.assert_close(buf[:, 1:3], apply_rope_ref(x, pos, spec))
    assert torch.equal(buf[:, 0], torch.zeros(2, 8))


def test_bad_arguments():
    with pytest.raises(ValueError):
        RopeSpec(3)
    with pytest.raises(ValueError):
        apply_rope_ref(torch.randn(2, 4, 8), torch.arange(4), RopeSpec(10))
    with pytest.raises(ValueError):
        apply_rope_ref(torch.randn(2, 4, 8), torch.arange(5), RopeSpec(4))


def test_cached_tables_follow_values_and_in_place_writes():
    spec = RopeSpec(4)
    pos = torch.arange(6)
    first = rope_tables(pos, spec)[0].clone()
    assert torch.equal(rope_tables(torch.arange(6), spec)[0], first)  # a different tensor, same values
    pos.add_(1)
    torch.testing.assert_close(rope_tables(pos, spec)[0][0], first[1])
    with torch.inference_mode():
        p = torch.arange(6) * 2
        torch.testing.assert_close(rope_tables(p, spec)[0][1], first[2])
        p.mul_(0)
        assert torch.equal(rope_tables(p, spec)[0], torch.ones(6, 2))


def test_reference_is_differentiable():
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = apply_rope_ref(x, torch.arange(5), RopeSpec(4))
    y.pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())  # a rotation preserves norms: d|Rx|^2/dx = 2x


@pytest.mark.parametrize("pos", [torch.tensor([0, 5, 1023, 1024, 5000, 9000]), torch.tensor([7, 3, 7], dtype=torch.int32),
                                 torch.tensor([-2, 4]), torch.tensor([0.5, 3.0])])
def test_cpu_table_rows_equal_computed_angles(pos):
    """Integer positions are gathered from a position table (grown past 1024 as needed), negative and
    float ones computed: both give exactly the float64 angles cast to the table dtype."""
    spec = RopeSpec(8, theta=500.0)
    angle = pos.to(torch.float64)[:, None] * 500.0 ** (-2.0 * torch.arange(4, dtype=torch.float64) / 8)
    for dtype in (torch.float32, torch.bfloat16):
        cos, sin = rope_tables(pos, spec, dtype)
        assert cos.dtype == dtype and cos.shape == (len(pos), 4)
        assert torch.equal(cos, angle.cos().to(dtype)) and torch.equal(sin, angle.sin().to(dtype))
