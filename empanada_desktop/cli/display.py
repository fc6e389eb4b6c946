"""Before opening the window: is there a display, and can Qt's Linux (xcb) plugin load?

Without this, a terminal without a display (SSH to a lab workstation) or a Linux machine
missing one of the X libraries Qt needs gets Qt's own abort message, which names neither the
cause nor the package to install.
"""

from __future__ import annotations

import ctypes
import os
import sys

# The shared libraries Qt's xcb platform plugin loads, with the package that has each one
# (Debian/Ubuntu, Fedora). The README's "System packages on Linux" lists the same.
XCB_LIBRARIES = (
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    ("libxcb-xinerama.so.0", "libxcb-xinerama0", "libxcb"),
    ("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    ("libEGL.so.1", "libegl1", "libglvnd-egl"),
    ("libGL.so.1", "libgl1", "libglvnd-glx"),
    ("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
    ("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
)


def _platform(environ) -> str:
    return environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()


def display_problem(environ=None, platform: str | None = None) -> str | None:
    """One line saying why the window cannot open here, or None when it can (as far as we know)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return None
    chosen = _platform(environ)
    if chosen in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return ("the app's window needs a desktop session, and this terminal has none (no DISPLAY "
                "or WAYLAND_DISPLAY); every command works without one: see empanada-desktop --help")
    if chosen in ("", "xcb") and (chosen == "xcb" or not environ.get("WAYLAND_DISPLAY")):
        missing = missing_xcb_libraries()
        if missing:
            names = ", ".join(lib for lib, _, _ in missing)
            debian = " ".join(dict.fromkeys(deb for _, deb, _ in missing))
            fedora = " ".join(dict.fromkeys(fed for _, _, fed in missing))
            return (f"the window cannot open: Qt needs the system libraries {names}; install them "
                    f"(Debian/Ubuntu: sudo apt install {debian}; Fedora: sudo dnf install {fedora})")
    return None


def missing_xcb_libraries(load=ctypes.CDLL) -> list[tuple[str, str, str]]:
    """The entries of XCB_LIBRARIES whose library cannot be loaded."""
    missing = []
    for entry in XCB_LIBRARIES:
        try:
            load(entry[0])
        except OSError:
            missing.append(entry)
    return missing
