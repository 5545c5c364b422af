"""Compile every Triton kernel for Hopper (sm_90) on this machine, no GPU needed.

The interpreter checks the numbers; this checks that the same sources pass Triton's compiler (types,
layouts, shared memory) down to a cubin, which the interpreter never exercises.
"""

import importlib.util
import inspect
import os
import subprocess
import sys

import pytest

HAVE_TRITON = importlib.util.find_spec("triton") is not None
_standard = sys.modules.get("triton.language.standard")
COMPILER_HERE = HAVE_TRITON and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") and (
    _standard is None or type(_standard.sum).__name__ == "JITFunction")
pytestmark = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
here = pytest.mark.skipif(not COMPILER_HERE, reason="triton was imported for its interpreter here; see test_suite_in_subprocess")


def test_suite_in_subprocess():
    if COMPILER_HERE:
        pytest.skip("the compile tests ran in this process")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"REVERIE_TRITON_COMPILED": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning", __file__],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]

FLOATS = {"qk_scale", "scale", "freq_scale", "eps"}


def _compile(kernel, pointers, constexprs, num_warps=4, num_stages=3):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = triton.jit(kernel.fn)
    names = list(inspect.signature(kernel.fn).parameters)
    sig = {}
    for n in names:
        if n in constexprs:
            sig[n] = "constexpr"
        elif n[0].isupper():
            sig[n] = pointers.get(n, "*fp32")
        else:
            sig[n] = "fp32" if n in FLOATS else "i32"
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": num_stages})
    except RuntimeError as exc:
        if "backend" in str(exc).lower():
            pytest.skip(f"no CUDA compiler backend in this triton build: {exc}")
        raise
    assert "cubin" in compiled.asm
    return compiled


@here
@pytest.mark.parametrize("bits,dtype,first,last", [(0, "bf16", True, False), (8, "bf16", False, True), (4, "fp16", False, False)])
def test_attention_kernel_compiles(bits, dtype, first, last):
    from reverie.kernels.fused.attention import _attend_segment, launch_config

    block_m, block_n, num_warps, num_stages = launch_config(2640)  # a Matrix-Game chunk: 3 x 880 queries
    store = {0: f"*{dtype}", 8: "*i8", 4: "*u8"}[bits]
    pointers = {"Q": f"*{dtype}", "K": store, "V": store, "IDX": "*i64", "O": f"*{dtype}"}
    const = dict(D=128, ROPE_DIMS=44, HALF_P=32, BITS=bits, GROUP=32, HAS_INDEX=True, HAS_BIAS=True, FIRST=first, LAST=last,
                 BLOCK_M=block_m, BLOCK_N=block_n, DOT_F32=False)
    compiled = _compile(_attend_segment, pointers, const, num_warps, num_stages)
    assert compiled.metadata.shared <= 227 * 1024  # fits Hopper's shared memory per block


@here
@pytest.mark.parametrize("bits", [8, 4])
def test_quant_kernels_compile(bits):
    from reverie.kernels.fused.quant import _codec

    codes = "*i8" if bits == 8 else "*u8"
    for decode in (False, True):
        _compile(_codec, {"X": "*bf16", "C": codes}, dict(D=128, GROUP=32, BITS=bits, BLOCK_R=16, DECODE=decode))


@here
def test_score_kernels_compile():
    from reverie.kernels.fused.scores import _participation, _token_cosine

    _compile(_participation, {"K": "*bf16", "POS": "*i64"}, dict(D=128, ROPE_DIMS=32, BLOCK_S=64, BLOCK_D=128))
    _compile(_token_cosine, {"X": "*bf16"}, dict(D=128, PER_HEAD=False, BLOCK_T=32, BLOCK_D=128))
