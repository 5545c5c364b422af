"""Compiled Triton kernels and the flash-attn backend on CUDA (skipped without a CUDA device)."""

import importlib.util

import pytest
import torch

from reverie.kernels import attend, attend_ref, attention_backend, backends
from reverie.kernels.attend import attend_torch
from reverie.kernels.quant import dequantize_ref, quantize_ref
from reverie.kernels.scores import participation_scores_ref, token_cosine_ref
from reverie.kernels.testing import random_view

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")]


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    backends.reset()
    yield
    backends.reset()


def test_auto_choice_on_cuda_is_triton():
    q, view = random_view(2, 64, 8, 32, device="cuda", dtype=torch.bfloat16)
    assert backends.select(q, view).name == "triton"


@pytest.mark.parametrize("bits", [0, 8, 4])
@pytest.mark.parametrize("gather,bias", [(None, None), (700, "slot"), (900, "head")])
def test_attention_bf16_flash_rule(bits, gather, bias):
    from reverie.kernels.fused.attention import attend_triton

    q, view = random_view(4, 128, 200, 1000, bits=bits, group=32, gather=gather, bias=bias,
                          dtype=torch.bfloat16, device="cuda")
    ref = attend_ref(q, view)
    err = (attend_triton(q, view).float() - ref).abs().max().item()
    err_pt = (attend_torch(q, view).float() - ref).abs().max().item()
    assert err <= 2 * err_pt + 1e-3, (err, err_pt)


def _unpacked(codes: torch.Tensor, bits: int) -> torch.Tensor:
    codes = codes.int()
    return codes if bits == 8 else torch.stack((codes & 15, codes >> 4), -1)


def test_quant_kernels_match_reference():
    from reverie.kernels.fused.quant import dequantize_triton, quantize_triton

    x = torch.randn(12, 300, 128, device="cuda", dtype=torch.bfloat16)
    for bits in (8, 4):
        codes, scale, zero = quantize_triton(x, bits, 32)
        rc, rs, rz = quantize_ref(x, bits, 32)
        torch.testing.assert_close(scale, rs)
        # division may differ by an ulp at ties: one step of one code (int4: compare the unpacked nibbles,
        # where a step in the high one is 16 in the packed byte)
        assert (_unpacked(codes, bits) - _unpacked(rc, bits)).abs().max() <= 1
        y = dequantize_triton(rc, rs, rz, bits, 32)
        torch.testing.assert_close(y, dequantize_ref(rc, rs, rz, bits, 32))


def test_score_kernels_match_reference():
    from reverie.kernels.fused.scores import participation_scores_triton, token_cosine_triton

    q, k = torch.randn(12, 880, 128, device="cuda"), torch.randn(12, 3000, 128, device="cuda")
    torch.testing.assert_close(participation_scores_triton(q, k), participation_scores_ref(q, k), rtol=1e-4, atol=1e-2)
    frames = torch.randn(12, 4, 880, 128, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(token_cosine_triton(frames), token_cosine_ref(frames), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed")
def test_flash_backend_dense_segments():
    q, view = random_view(4, 128, 200, 1000, dtype=torch.bfloat16, device="cuda")
    ref = attend_ref(q, view)
    with attention_backend("flash-attn"):
        out = attend(q, view)
    err_pt = (attend_torch(q, view).float() - ref).abs().max().item()
    assert (out.float() - ref).abs().max().item() <= 2 * err_pt + 1e-3
