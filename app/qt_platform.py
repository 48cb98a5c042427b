"""Before QApplication exists: can Qt open a window here? If not, say which package to install.

Without its platform plugin's system libraries Qt prints "could not load the Qt platform plugin" and aborts
the process. On Linux the xcb plugin (X11, and XWayland) needs a dozen xcb libraries that a fresh Debian or
Fedora desktop lacks. Opening the plugin with the dynamic loader first costs a few milliseconds (Qt loads the
same file right after, so nothing is loaded twice) and tells exactly which library is missing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package): the system libraries that Qt's xcb plugin and the Qt
# libraries Tandem uses link against (readelf -d on PySide6 6.11), beyond glibc, libstdc++, zlib and zstd.
XCB_PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}

Loader = Callable[[str], object]


def _default_loader(path: str) -> object:
    return ctypes.CDLL(path)


def _requested_platform(env: Mapping[str, str]) -> str | None:
    """The platform Qt will try first: QT_QPA_PLATFORM ('xcb', 'wayland;xcb', 'offscreen:size=...'), else
    wayland in a Wayland session and xcb everywhere else (Qt 6 on Linux)."""
    requested = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if requested:
        return requested
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return "xcb"


def _xcb_plugin(plugin_dirs: list[Path]) -> Path | None:
    for folder in plugin_dirs:
        candidate = folder / "platforms" / "libqxcb.so"
        if candidate.is_file():
            return candidate
    return None


def _plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    from PySide6.QtCore import QLibraryInfo

    dirs = [Path(p) for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)))
    return dirs


def missing_libraries(error: str, load: Loader) -> list[str]:
    """The sonames the loader cannot find: the one its error names, then every other known xcb dependency
    tried one by one (the loader stops at the first, and a user should install them all at once)."""
    missing: list[str] = []
    first = error.split(":", 1)[0].strip()
    if first.startswith("lib") and ".so" in first:
        missing.append(first)
    for soname in XCB_PACKAGES:
        if soname in missing:
            continue
        try:
            load(soname)
        except OSError:
            missing.append(soname)
    return missing


def install_hint(missing: list[str]) -> str:
    """'sudo apt install A B (Fedora: sudo dnf install C D)' for the sonames with a known package."""
    known = [XCB_PACKAGES[s] for s in missing if s in XCB_PACKAGES]
    if not known:
        return "install the packages that provide them"
    debian = " ".join(dict.fromkeys(d for d, _ in known))
    fedora = " ".join(dict.fromkeys(f for _, f in known))
    return f"install them with: sudo apt install {debian} (Fedora: sudo dnf install {fedora})"


def platform_problem(
    env: Mapping[str, str] | None = None,
    plugin_dirs: list[Path] | None = None,
    load: Loader = _default_loader,
) -> str | None:
    """One line saying why Qt cannot open a window on this Linux desktop, or None when it can (or when it is
    not Linux or not the xcb plugin, which this check does not know)."""
    if not sys.platform.startswith("linux"):
        return None
    env = os.environ if env is None else env
    platform = _requested_platform(env)
    if platform != "xcb":
        return None
    if not env.get("DISPLAY"):
        return (
            "no display to open a window on (DISPLAY is not set): start Tandem from a desktop session, "
            "or use `tandem chat` in a terminal"
        )
    plugin = _xcb_plugin(_plugin_dirs(env) if plugin_dirs is None else plugin_dirs)
    if plugin is None:
        return None  # a Qt without the xcb plugin: let Qt report what it has
    try:
        load(str(plugin))
    except OSError as exc:
        missing = missing_libraries(str(exc), load)
        if not missing:
            return f"Qt's X11 platform plugin cannot be loaded: {exc}"
        return (
            f"Qt's X11 platform plugin needs system libraries that are missing: {', '.join(missing)}; "
            f"{install_hint(missing)}"
        )
    return None
