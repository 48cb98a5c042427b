"""app.qt_platform: a missing xcb library is named with its package before Qt can abort the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import qt_platform
from app.qt_platform import XCB_PACKAGES, install_hint, missing_libraries, platform_problem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check is Linux-only")


def _plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "platforms").mkdir()
    (tmp_path / "platforms" / "libqxcb.so").write_bytes(b"\x7fELF")
    return tmp_path


class FakeLoader:
    """The dynamic loader of a machine lacking `absent`: the plugin fails on the first one, like dlopen."""

    def __init__(self, absent: list[str]) -> None:
        self.absent = absent
        self.loaded: list[str] = []

    def __call__(self, path: str) -> object:
        self.loaded.append(path)
        if path.endswith("libqxcb.so") and self.absent:
            raise OSError(f"{self.absent[0]}: cannot open shared object file: No such file or directory")
        if path in self.absent:
            raise OSError(f"{path}: cannot open shared object file: No such file or directory")
        return object()


X11 = {"DISPLAY": ":0"}


def test_missing_xcb_libraries_are_all_named_with_their_packages(tmp_path: Path) -> None:
    loader = FakeLoader(["libxcb-icccm.so.4", "libxcb-cursor.so.0", "libxcb-keysyms.so.1"])
    line = platform_problem(X11, [_plugin_dir(tmp_path)], loader)
    assert line is not None and "\n" not in line
    for soname in loader.absent:
        assert soname in line
    assert "sudo apt install libxcb-icccm4 libxcb-cursor0 libxcb-keysyms1" in line
    assert "sudo dnf install xcb-util-wm xcb-util-cursor xcb-util-keysyms" in line


def test_a_loadable_plugin_is_no_problem(tmp_path: Path) -> None:
    loader = FakeLoader([])
    assert platform_problem(X11, [_plugin_dir(tmp_path)], loader) is None
    assert loader.loaded == [str(tmp_path / "platforms" / "libqxcb.so")]  # one dlopen on the happy path


@pytest.mark.parametrize(
    "env",
    [
        {"QT_QPA_PLATFORM": "offscreen"},
        {"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"},
        {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"},
        {"XDG_SESSION_TYPE": "wayland"},
    ],
)
def test_other_platforms_are_left_to_qt(tmp_path: Path, env: dict[str, str]) -> None:
    loader = FakeLoader(["libxcb-cursor.so.0"])
    assert platform_problem(env, [_plugin_dir(tmp_path)], loader) is None
    assert loader.loaded == []


def test_explicit_xcb_with_options_is_checked(tmp_path: Path) -> None:
    env = {"QT_QPA_PLATFORM": "xcb:nograb", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}
    assert platform_problem(env, [_plugin_dir(tmp_path)], FakeLoader(["libxcb-cursor.so.0"])) is not None


def test_no_display_is_one_clear_line(tmp_path: Path) -> None:
    line = platform_problem({}, [_plugin_dir(tmp_path)], FakeLoader([]))
    assert line is not None and "DISPLAY" in line and "tandem chat" in line


def test_an_unknown_missing_library_is_still_named(tmp_path: Path) -> None:
    line = platform_problem(X11, [_plugin_dir(tmp_path)], FakeLoader(["libfancy.so.3"]))
    assert line is not None and "libfancy.so.3" in line and "install the packages" in line


def test_no_xcb_plugin_means_nothing_to_check(tmp_path: Path) -> None:
    assert platform_problem(X11, [tmp_path], FakeLoader(["libxcb-cursor.so.0"])) is None


def test_missing_libraries_lists_each_once() -> None:
    error = "libxcb-icccm.so.4: cannot open shared object file: No such file or directory"
    found = missing_libraries(error, FakeLoader(["libxcb-icccm.so.4"]))
    assert found == ["libxcb-icccm.so.4"]


def test_every_soname_has_both_package_names() -> None:
    for soname, (debian, fedora) in XCB_PACKAGES.items():
        assert soname.startswith("lib") and ".so." in soname
        assert debian and fedora
    assert install_hint(["libxcb.so.1", "libxcb-shm.so.0"]).endswith("(Fedora: sudo dnf install libxcb)")


def test_the_real_plugin_is_found_in_this_pyside6() -> None:
    dirs = qt_platform._plugin_dirs({})
    assert qt_platform._xcb_plugin(dirs) is not None


def test_app_prints_the_line_and_exits_instead_of_aborting(tmp_path: Path) -> None:
    """The real entry point, in a child: xcb requested, no display. Qt would abort; Tandem exits 2 with one
    line on stderr and never creates the QApplication."""
    env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "xcb", "TANDEM_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tandem-app: no display"), result.stderr
