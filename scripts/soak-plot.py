#!/usr/bin/env python3
"""Draws the soak's record (tests/tests/agent_soak.rs writes target/test-output/agent-soak.csv)
as an SVG with three panels over time: the agent's resident memory, its open file
descriptors, and the slowest tick of each 10 s window. Python's standard library only.

    python3 scripts/soak-plot.py target/test-output/agent-soak.csv docs/soak-1h.svg "title"
"""

import csv
import sys

WIDTH, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, GAP = 760, 150, 70, 20, 40, 45


def nice_max(v):
    """The smallest 1/2/5 x 10^k at or above v (an axis top)."""
    if v <= 0:
        return 1.0
    k = 1.0
    while k * 10 < v:
        k *= 10
    while k > v:
        k /= 10
    for m in (1, 2, 5, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def panel(out, top, xs, ys, label, unit, colour, t_max):
    y_top = nice_max(max(ys) * 1.15)
    h = PANEL_H
    plot_w = WIDTH - MARGIN_L - MARGIN_R
    out.append(f'<text x="{MARGIN_L}" y="{top - 8}" font-size="13">{label}</text>')
    out.append(
        f'<rect x="{MARGIN_L}" y="{top}" width="{plot_w}" height="{h}" fill="none" stroke="#999"/>'
    )
    for i in range(5):
        v = y_top * i / 4
        y = top + h - h * i / 4
        out.append(f'<line x1="{MARGIN_L}" y1="{y:.1f}" x2="{MARGIN_L + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{top + h / 2}" font-size="11" transform="rotate(-90 14 {top + h / 2})" '
        f'text-anchor="middle">{unit}</text>'
    )
    points = " ".join(
        f"{MARGIN_L + plot_w * x / t_max:.1f},{top + h - h * y / y_top:.1f}" for x, y in zip(xs, ys)
    )
    out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "interference agent soak"
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no rows")
    t = [float(r["t_s"]) / 60 for r in rows]
    t_max = max(t)
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    tick = [float(r["tick_max_window_s"]) * 1000 for r in rows]
    height = MARGIN_T + 3 * (PANEL_H + GAP) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" font-size="15" text-anchor="middle">{title}</text>',
    ]
    panels = [
        (rss, f"resident memory (VmRSS), MiB: {min(rss):.1f} to {max(rss):.1f}", "MiB", "#1f77b4"),
        (fds, f"open file descriptors: {min(fds)} to {max(fds)}", "fds", "#2ca02c"),
        (tick, f"slowest tick in each 10 s, ms (budget: the 5 s tick): max {max(tick):.0f}", "ms", "#d62728"),
    ]
    for i, (ys, label, unit, colour) in enumerate(panels):
        top = MARGIN_T + 15 + i * (PANEL_H + GAP)
        panel(out, top, t, ys, label, unit, colour, t_max)
    base = MARGIN_T + 15 + 2 * (PANEL_H + GAP) + PANEL_H
    plot_w = WIDTH - MARGIN_L - MARGIN_R
    step = 10 if t_max > 30 else (2 if t_max > 5 else 1)
    m = 0
    while m <= t_max:
        x = MARGIN_L + plot_w * m / t_max
        out.append(f'<text x="{x:.1f}" y="{base + 16}" font-size="11" text-anchor="middle">{m}</text>')
        m += step
    out.append(f'<text x="{WIDTH / 2}" y="{base + 32}" font-size="11" text-anchor="middle">minutes</text>')
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
