"""engine.fit.hardware: device detection through ggml's device API, and the fake device sets."""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json

import psutil
import pytest

from engine.cli import hw as hw_cli
from engine.fit import hardware
from engine.fit.hardware import (
    CpuBackend,
    Device,
    DeviceType,
    HardwareInfo,
    cpu_backend,
    detect,
    fake_hardware,
    load_backends,
    rebuild_hint,
)

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
    assert set(data["cpu_backend"]) == {"variant", "features"}


def test_the_cpu_backend_llama_cpp_runs_on_is_named() -> None:
    """On the plain build `make test` installs there is one CPU backend, built in; the installers' build
    (tests/installers) has one library per instruction-set level and names the one ggml chose."""
    cpu = cpu_backend()
    assert cpu is not None and cpu == detect().cpu_backend
    assert all(f and f == f.upper() for f in cpu.features)
    libggml = hardware._libggml()
    reg = libggml.ggml_backend_reg_by_name(b"CPU")
    features_fn = libggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    library = hardware._library_of(features_fn)
    assert library is not None and "ggml-cpu" in library
    assert cpu.variant == hardware._cpu_variant(library)


def test_cpu_variant_comes_from_the_library_name() -> None:
    assert hardware._cpu_variant("/opt/tandem/_internal/llama_cpp/lib/libggml-cpu-haswell.so") == "haswell"
    assert hardware._cpu_variant(r"C:\Tandem\_internal\llama_cpp\lib\ggml-cpu-skylakex.dll") == "skylakex"
    assert hardware._cpu_variant("/venv/llama_cpp/lib/libggml-cpu.so.0") is None
    assert hardware._cpu_variant("/venv/llama_cpp/lib/libggml-base.so") is None
    assert hardware._cpu_variant(None) is None
    assert CpuBackend("zen4", ("AVX512",)).label == "CPU (zen4)"
    assert CpuBackend(None, ("AVX2",)).label == "CPU"


def test_loading_the_backends_twice_registers_nothing_new() -> None:
    libggml = hardware._libggml()
    load_backends()
    count = libggml.ggml_backend_reg_count()
    load_backends()
    assert libggml.ggml_backend_reg_count() == count >= 1


def test_cli_hw_names_the_chosen_variant() -> None:
    hw = dataclasses.replace(fake_hardware([]), cpu_backend=CpuBackend("haswell", ("AVX", "AVX2", "FMA")))
    text = hw_cli.format_hardware(hw)
    assert "CPU backend: libggml-cpu-haswell, the best of this build's variants for this CPU" in text
    assert "compiled for AVX AVX2 FMA" in text
    plain = hw_cli.format_hardware(dataclasses.replace(hw, cpu_backend=CpuBackend(None, ("AVX2",))))
    assert "CPU backend: built in" in plain


def test_an_installed_tandem_does_not_suggest_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.sys, "frozen", True, raising=False)
    hint = rebuild_hint()
    assert "pip" not in hint and "GPU builds" in hint
