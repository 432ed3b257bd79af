"""The results table, the details below it, and the machine-readable (JSON) form.

The table shows each engine's cost (time per operation; bytes per document for memory
rows; whole seconds for open rows) and the headline `livedb / baseline` ratio, lower is
better. A figure an engine could not produce shows as "n/a" with the reason in a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .harness import BYTES, ENGINES, SECONDS, TIME, Figure, Row

HEADERS = ("workload", *ENGINES, "ratio", "baseline", "target", "met")
FORMAT_VERSION = 1
"""Version of the JSON document `as_json` builds; `compare` checks it."""


def figure(value: Figure | None, unit: str) -> str:
    """One cell: a cost in its unit, "n/a" for a reason, "-" for nothing."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return "n/a"
    if unit == BYTES:
        return f"{value:,.0f} B"
    if unit not in (TIME, SECONDS):
        return f"{value:,.3g} {unit}"
    if value >= 1:
        return f"{value:.3g} s" if value < 100 else f"{value:,.0f} s"
    for scale, suffix in ((1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value * 1e9:.3g} ns"


def ratio_text(ratio: float) -> str:
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def target_text(target: float) -> str:
    """"<= 0.9x"; more digits when one would round (0.001 must not read as 0.0)."""
    digits = 1
    while round(target, digits) != target and digits < 4:
        digits += 1
    return f"<= {target:.{digits}f}x"


def met_text(row: Row, judged: bool) -> str:
    met = row.met
    if met is None:
        return "-"
    if not judged:
        return "(smoke)"
    return "met" if met else "MISSED"


def _cells(row: Row, judged: bool) -> tuple[str, ...]:
    ratio = row.ratio
    return (
        row.title,
        *(figure(row.figures.get(engine), row.unit) for engine in ENGINES),
        "-" if ratio is None else ratio_text(ratio),
        row.baseline if ratio is not None else "-",
        "-" if row.target is None else target_text(row.target),
        met_text(row, judged),
    )


def table(rows: Sequence[Row], judged: bool = True) -> str:
    """The rows as an aligned text table (first column left-aligned, figures right)."""
    lines = [HEADERS, *(_cells(row, judged) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]

    def render(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(HEADERS), rule, *(render(cells) for cells in lines[1:])])


def details(rows: Sequence[Row]) -> str:
    """One line per row saying what was measured, then why any figure is missing."""
    width = max((len(row.title) for row in rows), default=0)
    lines = [f"  {row.title.ljust(width)}  {row.detail}" for row in rows if row.detail]
    reasons = sorted({(engine, figure) for row in rows for engine, figure in row.figures.items()
                      if isinstance(figure, str)})
    lines.extend(f"  n/a: {engine}: {reason}" for engine, reason in reasons)
    return "\n".join(lines)


def row_json(row: Row, group: str, judged: bool) -> dict[str, Any]:
    """One row as a JSON object: every figure, the ratio, the target and the verdict."""
    return {
        "key": row.key,
        "group": group,
        "title": row.title,
        "unit": row.unit,
        "figures": {engine: value for engine, value in row.figures.items()
                    if not isinstance(value, str)},
        "missing": {engine: value for engine, value in row.figures.items()
                    if isinstance(value, str)},
        "baseline": row.baseline,
        "ratio": row.ratio,
        "target": row.target,
        "met": row.met if judged else None,
        "detail": row.detail,
        "extra": dict(row.extra),
    }


def as_json(run: dict[str, Any], rows: Sequence[tuple[str, Row]], judged: bool,
            engines: dict[str, str]) -> dict[str, Any]:
    """The whole run: `run` facts (versions, load, mode), the engines, and every row."""
    return {
        "format": FORMAT_VERSION,
        "run": run,
        "engines": engines,
        "ratio": "livedb figure / baseline figure; lower is better",
        "rows": [row_json(row, group, judged) for group, row in rows],
    }
