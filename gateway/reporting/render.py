"""Tables for people: aligned plain text or Markdown, and the number formats both use.

JSON output does not go through here: the commands dump their figures as numbers, not strings.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field


@dataclass(slots=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def text(heading: str, tables: list[Table]) -> str:
    out = [heading, ""]
    for table in tables:
        widths = [len(h) for h in table.headers]
        for row in table.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        out.append(table.title)
        out.append("  ".join(h.ljust(w) for h, w in zip(table.headers, widths, strict=True)).rstrip())
        out.append("  ".join("-" * w for w in widths))
        for row in table.rows:
            cells = [c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)]
            out.append("  ".join(cells).rstrip())
        for note in table.notes:
            out.extend(textwrap.wrap(note, 106, initial_indent="  ", subsequent_indent="  "))
        out.append("")
    return "\n".join(out)


def _numeric(cell: str) -> bool:
    """Figures are right-aligned, names left-aligned."""
    return cell[:1].isdigit() or cell[:1] in "$<>" or cell in ("n/a", "PASS", "FAIL")


def markdown(heading: str, tables: list[Table]) -> str:
    out = [f"# {heading}", ""]
    for table in tables:
        out.append(f"## {table.title}")
        out.append("")
        out.append("| " + " | ".join(table.headers) + " |")
        out.append("|" + "|".join(["---", *["---:"] * (len(table.headers) - 1)]) + "|")
        out.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows)
        if table.notes:
            out.append("")
            out.extend(table.notes)
        out.append("")
    return "\n".join(out)


def render(fmt: str, heading: str, tables: list[Table]) -> str:
    return markdown(heading, tables) if fmt == "markdown" else text(heading, tables)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def count(value: int) -> str:
    return f"{value:,}"


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("PASS" if met else "FAIL")
