"""Plain-text tables that demos and benchmarks print."""

from __future__ import annotations


def text_table(rows: list[tuple]) -> str:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


__all__ = ["text_table"]
