"""What the machine offers llama.cpp: its devices (through ggml's own device API, so exactly the devices
llama.cpp will offload to, whatever the backend: CUDA, Metal, Vulkan, ROCm, SYCL), RAM and cores.

ggml's device functions are not wrapped by llama-cpp-python; they are called with ctypes on the libggml that
libllama uses (`_libggml`), after `load_backends()` has registered the backends. Signatures and
the `ggml_backend_dev_props` layout follow vendor/llama.cpp/ggml/include/ggml-backend.h of the pinned release.

A llama.cpp built with GGML_BACKEND_DL (the installers' build) has its backends as loadable modules: the CPU
backend in one variant per instruction set (GGML_CPU_ALL_VARIANTS), GPU backends beside them. ggml picks the
best variant this CPU can run when the backends are loaded; `CpuBackend` says which one it chose.
"""

from __future__ import annotations

import ctypes
import enum
import os
import platform
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from engine.units import GIB


class DeviceType(enum.IntEnum):
    """enum ggml_backend_dev_type."""

    CPU = 0
    GPU = 1
    IGPU = 2  # integrated GPU using host memory
    ACCEL = 3  # BLAS, AMX...: helps the CPU backend, holds no layers
    META = 4  # tensor-parallel wrapper; never listed by ggml_backend_dev_get


@dataclass(frozen=True, slots=True)
class Device:
    name: str  # ggml device name, e.g. "CUDA0", "Metal", "Vulkan0", "CPU"
    description: str  # e.g. "NVIDIA GeForce RTX 4090"
    type: DeviceType
    backend: str  # registry name: "CUDA", "Metal", "Vulkan", "ROCm", "CPU", "RPC"...
    free_bytes: int
    total_bytes: int
    device_id: str | None = None  # PCI bus id when known; the same GPU seen by two backends shares it

    @property
    def is_gpu(self) -> bool:
        return self.type in (DeviceType.GPU, DeviceType.IGPU)


@dataclass(frozen=True, slots=True)
class HardwareInfo:
    devices: tuple[Device, ...]  # every device ggml registered, CPU included
    ram_total_bytes: int
    ram_available_bytes: int
    cores_physical: int
    cores_logical: int
    gpu_offload_supported: bool  # llama_supports_gpu_offload() of the installed llama-cpp-python
    backends: tuple[str, ...]  # registered backend names, e.g. ("CUDA", "CPU")
    rebuild_hint: str | None = None  # how to get a GPU build, when this one cannot offload
    fake: bool = False  # made up for a test or for `--vram-gb`, not detected
    notes: tuple[str, ...] = field(default=())
    cpu_backend: CpuBackend | None = None  # the CPU backend llama.cpp runs on (None: simulated hardware)

    @property
    def offload_devices(self) -> tuple[Device, ...]:
        """The devices llama.cpp puts layers on, in its order (llama_model_load in src/llama.cpp): discrete
        GPUs (one per physical device id), or, only when there is none, the integrated GPUs of one backend."""
        if not self.gpu_offload_supported:
            return ()
        gpus: list[Device] = []
        for d in self.devices:
            if d.type == DeviceType.GPU and not any(
                d.device_id is not None and d.device_id == g.device_id for g in gpus
            ):
                gpus.append(d)
        if gpus:
            return tuple(gpus)
        igpus = [d for d in self.devices if d.type == DeviceType.IGPU]
        return tuple(d for d in igpus if d.backend == igpus[0].backend)

    @property
    def vram_free_bytes(self) -> int:
        return sum(d.free_bytes for d in self.offload_devices)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for dev in out["devices"]:
            dev["type"] = DeviceType(dev["type"]).name
        out["offload_devices"] = [d.name for d in self.offload_devices]
        return out


@dataclass(frozen=True, slots=True)
class CpuBackend:
    """The CPU backend ggml loaded: one variant of a GGML_CPU_ALL_VARIANTS build, or the built-in one."""

    variant: str | None  # "haswell", "skylakex"... (from libggml-cpu-<variant>); None: not a variant build
    features: tuple[str, ...]  # what it was compiled for: "AVX2", "FMA", "OPENMP", ...

    @property
    def label(self) -> str:
        """'CPU (haswell)' names the variant chosen; plain 'CPU' when the build had no choice to make."""
        return f"CPU ({self.variant})" if self.variant else "CPU"


# --- ctypes bindings ---------------------------------------------------------------------------------


class _DevCaps(ctypes.Structure):
    _fields_ = [
        ("async_", ctypes.c_bool),
        ("host_buffer", ctypes.c_bool),
        ("buffer_from_host_ptr", ctypes.c_bool),
        ("events", ctypes.c_bool),
        ("mmap_support", ctypes.c_bool),
    ]


class _DevProps(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t),
        ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int),
        ("device_id", ctypes.c_char_p),
        ("caps", _DevCaps),
    ]


def _bind(lib: ctypes.CDLL) -> None:
    v, sz = ctypes.c_void_p, ctypes.c_size_t
    sigs: dict[str, tuple[list[Any], Any]] = {
        "ggml_backend_dev_count": ([], sz),
        "ggml_backend_dev_get": ([sz], v),
        "ggml_backend_dev_get_props": ([v, ctypes.POINTER(_DevProps)], None),
        "ggml_backend_dev_backend_reg": ([v], v),
        "ggml_backend_reg_name": ([v], ctypes.c_char_p),
        "ggml_backend_reg_count": ([], sz),
        "ggml_backend_reg_get": ([sz], v),
        "ggml_backend_reg_by_name": ([ctypes.c_char_p], v),
        "ggml_backend_reg_get_proc_address": ([v, ctypes.c_char_p], v),
        "ggml_backend_load_all_from_path": ([ctypes.c_char_p], None),
    }
    for fn_name, (argtypes, restype) in sigs.items():
        fn = getattr(lib, fn_name)
        fn.argtypes = argtypes
        fn.restype = restype


def _device_type(value: int) -> DeviceType:
    # a newer ggml may add types; treat unknown ones like ACCEL (never offloaded to)
    return DeviceType(value) if value in DeviceType._value2member_map_ else DeviceType.ACCEL


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _libggml() -> Any:
    """ggml as libllama sees it. A wheel stores no symlinks, so llama_cpp/lib holds libggml.so and
    libggml.so.0 as two files, and the binding's `_ggml.libggml` (the first) and libllama's dependency (the
    second) are two copies in memory, each with its own backend registry: the backends must be loaded into,
    and read from, libllama's. dlsym on libllama's handle finds its dependencies' symbols; Windows'
    GetProcAddress does not, but there ggml.dll is one file, loaded once."""
    import llama_cpp.llama_cpp as binding

    lib = binding._lib
    try:
        lib.ggml_backend_reg_count  # noqa: B018 - probes whether dlsym reaches ggml through libllama
    except AttributeError:
        from llama_cpp._ggml import libggml as lib
    _bind(lib)
    return lib


def load_backends() -> None:
    """Register llama.cpp's backends (idempotent). A GGML_BACKEND_DL build registers none by itself, and
    llama_backend_init() only looks for the modules beside the executable and in the working directory
    (ggml_backend_load_all in ggml/src/ggml-backend-reg.cpp): for a Python program that is the interpreter's
    folder, so the modules are loaded from llama_cpp/lib, where the binding keeps its libraries."""
    import llama_cpp

    libggml = _libggml()
    if libggml.ggml_backend_reg_count() == 0:
        lib_dir = os.path.join(os.path.dirname(os.path.abspath(llama_cpp.__file__)), "lib")
        libggml.ggml_backend_load_all_from_path(os.fsencode(lib_dir))
    llama_cpp.llama_backend_init()  # f16 tables; loads nothing more once a backend is registered


def _library_of(address: int) -> str | None:
    """The file of the shared library holding `address` (dladdr; None where there is none, e.g. Windows)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (AttributeError, OSError, TypeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _cpu_variant(library: str | None) -> str | None:
    """'haswell' for .../libggml-cpu-haswell.so (ggml-cpu-haswell.dll); None for the plain libggml-cpu."""
    if library is None:
        return None
    stem = library.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0].removeprefix("lib")
    variant = stem.removeprefix("ggml-cpu-")
    return variant if variant != stem and variant else None


def _cpu_backend(libggml: Any) -> CpuBackend | None:
    reg = libggml.ggml_backend_reg_by_name(b"CPU")
    if not reg:
        return None
    address = libggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    if not address:
        return CpuBackend(None, ())
    get_features = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(address)
    features: list[str] = []
    array = get_features(reg)
    for i in range(64):  # the list ends with a NULL name; 64 bounds a malformed one
        if not array[i].name:
            break
        features.append(_text(array[i].name))
    return CpuBackend(_cpu_variant(_library_of(address)), tuple(features))


def cpu_backend() -> CpuBackend | None:
    """The CPU backend llama.cpp runs on (loads the backends first)."""
    load_backends()
    return _cpu_backend(_libggml())


def _ggml_devices() -> tuple[list[Device], list[str], bool]:
    """(devices, backend names, gpu offload supported) as the installed llama.cpp sees them."""
    import llama_cpp

    load_backends()
    libggml = _libggml()
    devices: list[Device] = []
    for i in range(libggml.ggml_backend_dev_count()):
        dev = libggml.ggml_backend_dev_get(i)
        props = _DevProps()
        libggml.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        reg = libggml.ggml_backend_dev_backend_reg(dev)
        devices.append(
            Device(
                name=_text(props.name),
                description=_text(props.description),
                type=_device_type(props.type),
                backend=_text(libggml.ggml_backend_reg_name(reg)) if reg else "",
                free_bytes=int(props.memory_free),
                total_bytes=int(props.memory_total),
                device_id=_text(props.device_id) or None,
            )
        )
    backends = [
        _text(libggml.ggml_backend_reg_name(libggml.ggml_backend_reg_get(i)))
        for i in range(libggml.ggml_backend_reg_count())
    ]
    return devices, backends, bool(llama_cpp.llama_supports_gpu_offload())


def rebuild_hint() -> str:
    """How to reinstall llama-cpp-python with GPU offload, for the GPU this machine seems to have."""
    import importlib.metadata

    if getattr(sys, "frozen", False):
        return (
            "This installed Tandem carries llama.cpp's CPU backends only, so models run on the CPU. "
            "For GPU offload, install Tandem from source with a GPU build of llama-cpp-python "
            "(README, 'GPU builds')."
        )

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "0.3.36"
    if platform.system() == "Darwin":
        flag, what = "-DGGML_METAL=on", "Metal (Apple GPU)"
    elif shutil.which("nvidia-smi"):
        flag, what = "-DGGML_CUDA=on", "CUDA (NVIDIA; needs the CUDA toolkit)"
    elif shutil.which("rocminfo") or os.path.exists("/opt/rocm"):
        flag, what = "-DGGML_HIP=on", "ROCm (AMD; needs the ROCm/HIP SDK)"
    else:
        flag, what = "-DGGML_VULKAN=on", "Vulkan (any vendor; needs the Vulkan SDK)"
    cmd = f'CMAKE_ARGS="{flag}" pip install --force-reinstall --no-cache-dir llama-cpp-python=={version}'
    return (
        f"The installed llama-cpp-python was built without GPU offload, so models run on the CPU only. "
        f"To use the GPU, rebuild it with {what}:\n  {cmd}\n"
        "(other backends: -DGGML_CUDA=on, -DGGML_HIP=on, -DGGML_VULKAN=on, -DGGML_METAL=on, -DGGML_SYCL=on)"
    )


def _ram_and_cores() -> tuple[int, int, int, int]:
    vm = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return int(vm.total), int(vm.available), int(physical), int(logical)


def detect() -> HardwareInfo:
    """The real machine. Works on a CPU-only build (then: CPU only, with the rebuild hint)."""
    devices, backends, offload = _ggml_devices()
    cpu = _cpu_backend(_libggml())
    ram_total, ram_avail, physical, logical = _ram_and_cores()
    notes: list[str] = []
    if offload and not any(d.is_gpu for d in devices):
        notes.append("this llama.cpp build supports GPU offload, but no GPU device was found")
    return HardwareInfo(
        devices=tuple(devices),
        ram_total_bytes=ram_total,
        ram_available_bytes=ram_avail,
        cores_physical=physical,
        cores_logical=logical,
        gpu_offload_supported=offload,
        backends=tuple(backends),
        rebuild_hint=None if offload else rebuild_hint(),
        notes=tuple(notes),
        cpu_backend=cpu,
    )


def fake_hardware(
    vram_gb: Sequence[float] = (),
    *,
    ram_gb: float | None = None,
    backend: str = "CUDA",
    cores: int | None = None,
) -> HardwareInfo:
    """A made-up device set: one GPU per entry of `vram_gb` (all free), plus the CPU. RAM and cores are the
    real machine's unless given. For tests and `tandem models fit --vram-gb`."""
    ram_total, ram_avail, physical, logical = _ram_and_cores()
    if ram_gb is not None:
        ram_total = ram_avail = int(ram_gb * GIB)
    if cores is not None:
        physical = logical = cores
    gpus = tuple(
        Device(
            f"{backend}{i}",
            f"simulated GPU with {gb:g} GiB",
            DeviceType.GPU,
            backend,
            int(gb * GIB),
            int(gb * GIB),
            device_id=f"fake:{i}",
        )
        for i, gb in enumerate(vram_gb)
    )
    cpu = Device("CPU", platform.processor() or "CPU", DeviceType.CPU, "CPU", ram_avail, ram_total)
    return HardwareInfo(
        devices=(*gpus, cpu),
        ram_total_bytes=ram_total,
        ram_available_bytes=ram_avail,
        cores_physical=physical,
        cores_logical=logical,
        gpu_offload_supported=bool(gpus),
        backends=(backend, "CPU") if gpus else ("CPU",),
        fake=True,
    )
