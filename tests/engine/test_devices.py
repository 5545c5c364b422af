import pytest
import torch

from reverie.engine.devices import DeviceError, resolve_device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_is_cuda_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu0", "cuda:x", "", "meta"])
def test_names_that_are_not_usable_devices_are_refused(name):
    with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@needs_no_cuda
def test_cuda_without_cuda_says_so():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


@needs_cuda
def test_a_cuda_index_past_the_visible_devices_is_refused():
    assert resolve_device("cuda:0").type == "cuda"
    with pytest.raises(DeviceError, match="visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
