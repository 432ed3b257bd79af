"""The results table."""

from __future__ import annotations

from collections.abc import Sequence

from .harness import Row

HEADERS = ("workload", "livedb ops/s", "sqlite3 ops/s", "ratio", "target", "met")


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def _target(target: float) -> str:
    """One decimal, or two when one would round it (0.77 must not read as 0.8)."""
    return f"{target:.1f}" if round(target, 1) == target else f"{target:.2f}"


def _cells(row: Row) -> tuple[str, ...]:
    ratio, met = row.ratio, row.met
    return (
        row.title,
        _rate(row.livedb),
        _rate(row.sqlite),
        "-" if ratio is None else f"{ratio:.2f}x",
        "-" if row.target is None else f">= {_target(row.target)}x",
        "-" if met is None else ("yes" if met else "NO"),
    )


def table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (first column left-aligned, figures right)."""
    lines = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]

    def render(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(HEADERS), rule, *(render(cells) for cells in lines[1:])])


def details(rows: Sequence[Row]) -> str:
    """One line per row saying what was measured."""
    width = max((len(row.title) for row in rows), default=0)
    return "\n".join(f"  {row.title.ljust(width)}  {row.detail}" for row in rows if row.detail)
