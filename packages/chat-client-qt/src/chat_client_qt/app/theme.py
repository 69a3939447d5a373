"""Colours and fonts derived from the system palette, so the app follows the light or dark theme.

Only colours with no palette role (presence, errors, the unread badge's) are fixed, in tones readable on both.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QFont, QGuiApplication, QPalette

ONLINE = QColor("#2e9d4f")
ERROR_LIGHT = QColor("#b3261e")
ERROR_DARK = QColor("#ff8a80")


def is_dark(palette: QPalette | None = None) -> bool:
    """Whether the current colour scheme is dark (from the style hints, else the window colour)."""
    hints = QGuiApplication.styleHints()
    if palette is None and hints is not None:
        scheme = hints.colorScheme()
        if scheme != Qt.ColorScheme.Unknown:
            return scheme == Qt.ColorScheme.Dark
    palette = palette or QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def secondary(palette: QPalette) -> QColor:
    """Text colour for secondary information (times, previews, system lines)."""
    text = palette.color(QPalette.ColorRole.Text)
    base = palette.color(QPalette.ColorRole.Base)
    return mix(text, base, 0.45)


def error(palette: QPalette) -> QColor:
    """Text colour for errors (failed sends, sign-in errors)."""
    return ERROR_DARK if is_dark(palette) else ERROR_LIGHT


def mix(a: QColor, b: QColor, amount: float) -> QColor:
    """``a`` moved ``amount`` (0..1) of the way towards ``b``."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * amount),
        round(a.green() + (b.green() - a.green()) * amount),
        round(a.blue() + (b.blue() - a.blue()) * amount),
    )


def bold(font: QFont) -> QFont:
    """A bold copy of ``font``."""
    out = QFont(font)
    out.setBold(True)
    return out


def italic(font: QFont) -> QFont:
    """An italic copy of ``font``."""
    out = QFont(font)
    out.setItalic(True)
    return out


def smaller(font: QFont, factor: float = 0.88) -> QFont:
    """A smaller copy of ``font``."""
    out = QFont(font)
    if out.pointSizeF() > 0:
        out.setPointSizeF(out.pointSizeF() * factor)
    elif out.pixelSize() > 0:
        out.setPixelSize(max(8, round(out.pixelSize() * factor)))
    return out
