"""The Linux installer, built with `make installer` and run the way a user runs it: unpacked anywhere, with
no venv, no project Python and an `env -i`-style environment. It opens its window under Xvfb and chats with
the model it carries, in the window and in the terminal.

Slow (2 minutes; about 38 more on a machine whose packaging build of llama-cpp-python is not cached yet):
`make test-installer`. TANDEM_INSTALLER_ARTIFACT=path/to.tar.gz checks an artifact built before.
Needs Xvfb and xdotool (Debian: apt install xvfb xdotool).
"""

from __future__ import annotations

import os
import select
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.qt_platform import XCB_PACKAGES
from engine.store.default_model import FILENAME, SIZE

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3 * 3600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer"),
]

# Left to the system by PyInstaller (they belong to the graphics stack: libxcb.so.1 itself, GL, EGL).
SYSTEM_SONAMES = {"libxcb.so.1", "libGL.so.1", "libEGL.so.1"}


def _build() -> Path:
    if artifact := os.environ.get("TANDEM_INSTALLER_ARTIFACT"):
        return Path(artifact)
    subprocess.run(["make", "installer"], cwd=ROOT, check=True)
    return max((ROOT / "dist").glob("Tandem-*-linux-*.tar.gz"), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact unpacked into a fresh folder outside the checkout."""
    artifact = _build()
    where = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(artifact) as tar:
        tar.extractall(where, filter="tar")
    (folder,) = where.iterdir()
    return folder


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A new user's minimal environment: a home, the system PATH, nothing of this project or its venv."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _offline() -> list[str]:
    """`unshare -n`: run without any network (root, as in CI), to prove nothing is fetched at run time."""
    probe = (
        subprocess.run(["unshare", "-n", "true"], capture_output=True) if shutil.which("unshare") else None
    )
    return ["unshare", "-n"] if probe is not None and probe.returncode == 0 else []


def _tandem(
    bundle: Path, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_offline(), str(bundle / "tandem"), *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_bundle_carries_model_xcb_libraries_and_desktop_entry(bundle: Path) -> None:
    internal = bundle / "_internal"
    model = internal / "resources" / "models" / FILENAME
    assert model.is_file() and model.stat().st_size == SIZE
    for soname in XCB_PACKAGES:
        if soname.startswith(("libxcb", "libxkbcommon", "libX11")) and soname not in SYSTEM_SONAMES:
            assert (internal / soname).is_file(), f"{soname} is not bundled"
    desktop = (bundle / "tandem.desktop").read_text()
    assert "Exec=tandem" in desktop and "Icon=tandem" in desktop
    assert (bundle / "tandem.png").is_file() and os.access(bundle / "install.sh", os.X_OK)


def test_the_cli_answers_with_the_embedded_model(bundle: Path, user_env: dict[str, str]) -> None:
    version = _tandem(bundle, user_env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("tandem "), version.stderr
    chat = _tandem(
        bundle, user_env, "chat", "--max-tokens", "16", "--seed", "1", "What is the capital of France?"
    )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip(), "no reply"
    assert "smollm2" in chat.stderr.lower(), chat.stderr  # the model it carries, named on stderr


def test_hw_names_the_cpu_backend_it_chose(bundle: Path, user_env: dict[str, str]) -> None:
    variants = sorted((bundle / "_internal" / "llama_cpp" / "lib").glob("libggml-cpu-*.so"))
    hw = _tandem(bundle, user_env, "hw")
    assert hw.returncode == 0, hw.stderr
    if not variants:
        pytest.skip("built with a plain llama-cpp-python (--llama-wheel): no CPU variants to choose from")
    names = {p.name.removeprefix("libggml-cpu-").removesuffix(".so") for p in variants}
    assert {"x64", "haswell"} <= names
    line = next(ln for ln in hw.stdout.splitlines() if ln.startswith("CPU backend:"))
    chosen = line.removeprefix("CPU backend: libggml-cpu-").split(",")[0]
    assert chosen in names, hw.stdout


@pytest.fixture
def xvfb() -> Iterator[str]:
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("needs Xvfb and xdotool")
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 30)
        assert ready, "Xvfb did not start"
        display = ":" + os.read(read, 16).decode().strip()
        yield display
    finally:
        os.close(read)
        server.terminate()
        server.wait(10)


def _window(display: str) -> bool:
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--class", "tandem"],
        env={"DISPLAY": display, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
    )
    return found.returncode == 0 and bool(found.stdout.strip())


def _reply(history: Path) -> str:
    if not history.exists():
        return ""
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as db:
        row = db.execute("SELECT content FROM messages WHERE role = 'assistant' ORDER BY id DESC").fetchone()
    return row[0] if row else ""


def test_the_window_opens_and_chats(
    bundle: Path, user_env: dict[str, str], xvfb: str, tmp_path: Path
) -> None:
    env = dict(user_env, DISPLAY=xvfb)
    log = tmp_path / "app.log"
    started = time.perf_counter()
    with log.open("w") as out:
        app = subprocess.Popen(
            [*_offline(), str(bundle / "tandem")], env=env, cwd=env["HOME"], stdout=out, stderr=out
        )
    try:
        while not _window(xvfb):
            assert app.poll() is None, f"the app exited with {app.returncode}: {log.read_text()[-2000:]}"
            assert time.perf_counter() - started < 60, "no window within 60 s"
            time.sleep(0.05)
        print(f"start to window: {time.perf_counter() - started:.2f} s")
        # The composer has the focus: type a message, Enter sends it to the embedded model.
        time.sleep(1.0)
        tools = {"DISPLAY": xvfb, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        subprocess.run(["xdotool", "type", "--delay", "20", "Hello"], env=tools, check=True)
        subprocess.run(["xdotool", "key", "Return"], env=tools, check=True)
        history = Path(env["HOME"]) / ".local" / "share" / "tandem" / "history.sqlite3"  # the user data dir
        deadline = time.perf_counter() + 180
        while not _reply(history).strip():
            assert app.poll() is None, f"the app exited with {app.returncode}: {log.read_text()[-2000:]}"
            assert time.perf_counter() < deadline, "no reply saved within 180 s"
            time.sleep(0.5)
    finally:
        app.terminate()
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
