"""engine.fit.hardware: device detection through ggml's device API, and the fake device sets."""

from __future__ import annotations

import argparse
import ctypes
import json

import psutil
import pytest

from engine.cli import hw as hw_cli
from engine.fit.hardware import Device, DeviceType, HardwareInfo, detect, fake_hardware, rebuild_hint

GIB = 1024**3


def test_detect_reports_what_ggml_registered() -> None:
    info = detect()
    assert info.devices, "ggml always registers at least the CPU device"
    cpu = [d for d in info.devices if d.type == DeviceType.CPU]
    assert len(cpu) == 1 and cpu[0].backend == "CPU" and cpu[0].total_bytes > 0
    assert "CPU" in info.backends
    assert info.ram_total_bytes == psutil.virtual_memory().total
    assert 0 < info.ram_available_bytes <= info.ram_total_bytes
    assert 1 <= info.cores_physical <= info.cores_logical
    assert not info.fake


def test_device_props_struct_matches_the_library() -> None:
    """The ggml_backend_dev_props layout is declared by hand: its name/description/memory must agree with
    the individual getter functions, or the struct offsets are wrong."""
    import llama_cpp
    from llama_cpp._ggml import libggml

    llama_cpp.llama_backend_init()
    libggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    libggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(libggml, fn).restype = ctypes.c_char_p
        getattr(libggml, fn).argtypes = [ctypes.c_void_p]
    libggml.ggml_backend_dev_type.restype = ctypes.c_int
    libggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    info = detect()
    for i, dev in enumerate(info.devices):
        ptr = libggml.ggml_backend_dev_get(i)
        assert dev.name == libggml.ggml_backend_dev_name(ptr).decode()
        assert dev.description == libggml.ggml_backend_dev_description(ptr).decode()
        assert dev.type == libggml.ggml_backend_dev_type(ptr)


def test_cpu_only_build_says_how_to_rebuild() -> None:
    info = detect()
    if info.gpu_offload_supported:
        pytest.skip("this llama-cpp-python was built with GPU offload")
    assert info.offload_devices == ()
    assert info.rebuild_hint is not None
    assert 'CMAKE_ARGS="-DGGML_' in info.rebuild_hint and "llama-cpp-python==" in info.rebuild_hint


def test_rebuild_hint_names_every_backend_flag() -> None:
    hint = rebuild_hint()
    for flag in ("GGML_CUDA", "GGML_HIP", "GGML_VULKAN", "GGML_METAL"):
        assert flag in hint


def test_fake_hardware_lists_the_gpus_llama_cpp_would_use() -> None:
    hw = fake_hardware([8, 24], ram_gb=32, cores=4)
    assert [d.name for d in hw.offload_devices] == ["CUDA0", "CUDA1"]
    assert [d.total_bytes for d in hw.offload_devices] == [8 * GIB, 24 * GIB]
    assert hw.ram_available_bytes == 32 * GIB and hw.cores_logical == 4
    assert hw.gpu_offload_supported and hw.fake
    assert hw.vram_free_bytes == 32 * GIB
    assert fake_hardware([], ram_gb=4).offload_devices == ()


def _hw(*devices: Device, offload: bool = True) -> HardwareInfo:
    return HardwareInfo(devices, 8 * GIB, 8 * GIB, 4, 8, offload, ("X",))


def test_offload_devices_follow_llama_cpp_rules() -> None:
    gpu_a = Device("CUDA0", "A", DeviceType.GPU, "CUDA", GIB, GIB, device_id="0000:01:00.0")
    gpu_a_vk = Device("Vulkan0", "A", DeviceType.GPU, "Vulkan", GIB, GIB, device_id="0000:01:00.0")
    igpu = Device("Vulkan1", "iGPU", DeviceType.IGPU, "Vulkan", GIB, GIB)
    cpu = Device("CPU", "cpu", DeviceType.CPU, "CPU", GIB, GIB)
    blas = Device("BLAS", "blas", DeviceType.ACCEL, "BLAS", 0, 0)
    # the same physical GPU seen by two backends is used once; integrated GPUs only without a discrete one
    assert _hw(gpu_a, gpu_a_vk, igpu, cpu, blas).offload_devices == (gpu_a,)
    assert _hw(igpu, cpu).offload_devices == (igpu,)
    assert _hw(cpu, blas).offload_devices == ()
    assert _hw(gpu_a, cpu, offload=False).offload_devices == ()


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    hw_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_hw_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["hw"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "GPU offload:" in text and "RAM:" in text and "CPU cores:" in text
    args = _cli(["hw", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"devices", "ram_total_bytes", "gpu_offload_supported", "offload_devices"} <= set(data)
    assert any(d["type"] == "CPU" for d in data["devices"])
