"""Completeness heatmap: one row per symbol (worst at the top), one column per month, or per day for short ranges.

Colours: green = complete from the archive, blue = complete with API-filled days, red (empty) through
orange to yellow (nearly full) = gaps, light grey = outside the symbol's window. matplotlib is
optional (`pip install 'bhds[plot]'`) and imported only here, only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bhds import storage
from bhds.errors import ConfigError
from bhds.quality.grid import iso_day
from bhds.quality.series import DayView

DAY_COLUMNS_UP_TO = 92  # days; longer ranges are drawn per month
OUTSIDE = (0.93, 0.93, 0.93)
ARCHIVE = (0.17, 0.63, 0.17)
API = (0.12, 0.47, 0.71)
EMPTY = (0.84, 0.15, 0.16)
NEARLY_FULL = (1.0, 0.87, 0.34)


def require_matplotlib() -> None:
    """Fail before any work when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: install the plot extra: pip install 'bhds[plot]'") from None


def _columns(views: list[DayView]) -> tuple[int, int, bool]:
    first = min(v.first_day for v in views)
    last = max(v.first_day + len(v.expected) - 1 for v in views)
    return first, last, last - first + 1 <= DAY_COLUMNS_UP_TO


def cell_grid(views: list[DayView | None]) -> tuple[np.ndarray, list[str]]:
    """RGB cells (symbols × columns) and the column labels."""
    known = [v for v in views if v is not None]
    if not known:
        return np.ones((len(views), 1, 3)) * np.array(OUTSIDE), [""]
    first, last, by_day = _columns(known)
    days = np.arange(first, last + 1)
    if by_day:
        column_of_day = days - first
        labels = [iso_day(d) for d in days]
    else:
        months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        column_of_day = months - months[0]
        labels = [str(np.datetime64(m, "M")) for m in range(months[0], months[-1] + 1)]
    n_cols = int(column_of_day[-1]) + 1
    image = np.empty((len(views), n_cols, 3))
    image[:] = OUTSIDE
    for row, view in enumerate(views):
        if view is None:
            continue
        cols = column_of_day[view.first_day - first : view.first_day - first + len(view.expected)]
        expected = np.bincount(cols, weights=view.expected, minlength=n_cols)
        present = np.bincount(cols, weights=view.present, minlength=n_cols)
        api = np.bincount(cols, weights=view.api & (view.present > 0), minlength=n_cols) > 0
        has = expected > 0
        share = np.divide(present, expected, out=np.zeros(n_cols), where=has)
        full = has & (present >= expected)
        gap = has & ~full
        image[row, full & ~api] = ARCHIVE
        image[row, full & api] = API
        # Gaps shade from red (nothing) to yellow (almost everything): how bad, at a glance.
        t = share[gap][:, None]
        image[row, gap] = (1 - t) * np.array(EMPTY) + t * np.array(NEARLY_FULL)
    return image, labels


def draw(path: Path, symbols: list[str], views: list[DayView | None], *, title: str) -> int:
    """Write the heatmap PNG atomically; return its size in bytes."""
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    image, labels = cell_grid(views)
    n_rows, n_cols = image.shape[:2]
    # Fixed margins in inches (labels left, dates and legend below) instead of tight_layout,
    # which would draw the whole figure once more just to measure it.
    left, right, top, bottom = 0.25 + 0.065 * max((len(s) for s in symbols), default=0), 0.2, 0.45, 1.35
    width = min(24.0, max(8.0, left + right + 0.16 * n_cols))
    height = min(48.0, max(3.0, top + bottom + 0.14 * n_rows))
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    ax = fig.subplots()
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(n_rows), symbols, fontsize=6 if n_rows > 40 else 8)
    step = max(1, n_cols // 24)
    ax.set_xticks(range(0, n_cols, step), labels[::step], rotation=90, fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.legend(
        handles=[
            Patch(color=ARCHIVE, label="complete (archive)"),
            Patch(color=API, label="complete, API-filled days"),
            Patch(color=NEARLY_FULL, label="gaps: nearly full"),
            Patch(color=EMPTY, label="gaps: empty"),
            Patch(color=OUTSIDE, label="no data expected"),
        ],
        loc="lower center", ncol=5, fontsize=7, frameon=False,
    )
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
        size = tmp.stat().st_size
    return size
