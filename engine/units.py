"""Byte units: one formatter for every size Tandem shows (files, memory, rates), in binary units, as memory
and VRAM are reported — so a file's size and the memory it needs read in the same unit."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """123 -> "123 B"; 1_700_000 -> "1.62 MiB"; 96 GiB -> "96.0 GiB": three significant figures, so a
    size is never shown as "0 MiB"."""
    if abs(n) < KIB:
        return f"{n:.0f} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1000 or unit == _UNITS[-1]:
            break
    decimals = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{decimals}f} {unit}"
