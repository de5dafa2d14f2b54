"""Tables for the benchmark scripts: Markdown (for RESULTS.md) or aligned plain text."""

from __future__ import annotations


def print_table(title: str, header: list[str], rows: list[list[str]], markdown: bool, left: int = 1) -> None:
    """Print ``rows`` under ``header``; the first ``left`` columns are left-aligned, the rest right."""
    if markdown:
        print(f"\n**{title}**\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join([" --- "] * left + [" ---: "] * (len(header) - left)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    print(f"\n{title}")
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row))


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"
