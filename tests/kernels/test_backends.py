import subprocess
import sys

import pytest
import torch

from reverie.kernels import BackendError, attend, attend_ref, attention_backend
from reverie.kernels import backends
from reverie.kernels.testing import random_view


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    backends.reset()
    yield
    backends.reset()


def test_cpu_picks_torch():
    q, view = random_view(2, 16, 3, 6, bits=8, group=8, bias="slot")
    assert backends.select(q, view).name == "torch"
    assert not backends.use_triton_for(q)


def test_cuda_attention_defaults_to_torch_and_commit_ops_to_triton(monkeypatch):
    # measured on an H200: fused Triton attention at 0.17-0.18 of torch's throughput, the commit-time
    # Triton kernels 1.9-3.7x faster than their references (kernels/backends.py)
    import functools
    from types import SimpleNamespace

    def installed(*present):
        monkeypatch.setattr(backends, "_importable", functools.cache(lambda module: module in present))
        backends.reset()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    installed("triton", "flash_attn")
    assert backends._auto_choice("cuda").name == "flash-attn"
    installed("triton")
    assert backends._auto_choice("cuda").name == "torch"
    on_cuda, on_cpu = SimpleNamespace(device=SimpleNamespace(type="cuda")), SimpleNamespace(device=SimpleNamespace(type="cpu"))
    assert backends.use_triton_for(on_cuda) and not backends.use_triton_for(on_cpu)
    with attention_backend("torch"):
        assert not backends.use_triton_for(on_cuda)
    installed()
    assert not backends.use_triton_for(on_cuda)


def test_importing_kernels_is_light():
    code = "import sys, kernels; print(sorted(m for m in ('triton', 'flash_attn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_env_var_is_honored_and_read_once(monkeypatch):
    q, view = random_view(2, 16, 3, 6)
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert backends.select(q, view).name == "torch"
    monkeypatch.setenv(backends.ENV_VAR, "flash-attn")
    assert backends.requested() == "torch"  # chosen once, at first use
    backends.reset()
    assert backends.requested() == "flash-attn"


def test_missing_flash_attn_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "flash-attn")
    q, view = random_view(2, 16, 3, 6, dtype=torch.bfloat16)
    with pytest.raises(BackendError, match=r"flash-attn.*(not installed|does not run on 'cpu').*REVERIE_ATTN_BACKEND"):
        attend(q, view)


def test_interpreter_imported_too_late_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(backends, "interpreter_ready", lambda: False)
    q, view = random_view(2, 16, 3, 6)
    with attention_backend("triton"), pytest.raises(BackendError, match="before TRITON_INTERPRET=1 was set"):
        attend(q, view)


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    q, view = random_view(2, 16, 3, 6)
    with attention_backend("triton"), pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        attend(q, view)
    with attention_backend("triton"), pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        backends.use_triton_for(q)


def test_unknown_backend_names_the_choices(monkeypatch):
    with pytest.raises(BackendError, match="choose from"):
        with attention_backend("xformers"):
            pass
    monkeypatch.setenv(backends.ENV_VAR, "nope")
    with pytest.raises(BackendError, match="unknown attention backend 'nope'"):
        backends.requested()


def test_context_manager_overrides_env_and_restores(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "flash-attn")
    q, view = random_view(2, 16, 3, 6)
    with attention_backend("torch"):
        torch.testing.assert_close(attend(q, view), attend_ref(q, view))
    assert backends.requested() == "flash-attn"


def test_declared_constraints():
    flash = backends.get_backend("flash-attn")
    q, view = random_view(2, 16, 3, 6, bits=4, group=8, dtype=torch.bfloat16)
    assert "quantized" in flash.unsupported(q, view)
    q, view = random_view(2, 16, 3, 6, gather=3, dtype=torch.bfloat16)
    assert "gather" in flash.unsupported(q, view)
    q, view = random_view(2, 16, 3, 6, bias="slot", dtype=torch.bfloat16)
    assert "bias" in flash.unsupported(q, view)
    q, view = random_view(2, 16, 3, 6)
    assert "float32" in flash.unsupported(q, view)
    assert "16" in backends.get_backend("triton").unsupported(*random_view(2, 24, 3, 6))
    assert backends.get_backend("torch").unsupported(*random_view(2, 24, 3, 6, bits=8, group=8, bias="head")) is None


def test_auto_falls_back_per_call_when_the_first_choice_cannot_run_the_view(monkeypatch):
    dense_only = backends.Backend(name="dense-only", target="reverie.kernels.attend:attend_torch", devices=frozenset({"cpu"}),
                                  dtypes=frozenset({torch.float32}), index=False, bias=False, quantized=False)
    monkeypatch.setattr(backends, "_REGISTRY", {"dense-only": dense_only, **backends._REGISTRY})
    backends.reset()
    q, view = random_view(2, 16, 3, 6)
    assert backends.select(q, view).name == "dense-only"
    q, view = random_view(2, 16, 3, 6, bias="slot")
    assert backends.select(q, view).name == "torch"
    with attention_backend("dense-only"), pytest.raises(BackendError, match="bias"):
        backends.select(q, view)


def test_triton_backend_through_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    if not backends.interpreter_ready():
        pytest.skip("triton was imported compiled in this process (test_fused.py covers it in a subprocess)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    q, view = random_view(2, 16, 3, 6, bits=8, group=8, bias="slot", gather=4)
    with attention_backend("triton"):
        assert backends.select(q, view).name == "triton"
        assert backends.use_triton_for(q)
        torch.testing.assert_close(attend(q, view), attend_ref(q, view), atol=1e-5, rtol=1e-5)
