#!/usr/bin/env python3
"""Draws the mitigation demo's timeline as an SVG (standard library only).

Input: a JSON file {"title": str, "threshold_on": float, "threshold_off": float,
"series": {"score": [[t, v], ...], "victim_rate": [[t, ratio 0..1.2], ...],
"aggressor_duty": [[t, 0..1], ...]}, "events": [[t, "label"], ...]}.

Top panel: the pair's Contention Score (0-100) with the on/off thresholds. Bottom
panel: the victim's progress rate as a share of its solo rate, and when the
aggressor ran. Vertical lines: the agent's actions and rollbacks.

Usage: plot_timeline.py TIMELINE.json OUT.svg
"""

import json
import sys
from html import escape

W, H = 900, 560
LEFT, RIGHT = 70, 20
PANELS = [(40, 250), (300, 500)]  # (top, bottom) pixel rows of the two panels


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    data = json.load(open(sys.argv[1]))
    series = data["series"]
    ts = [t for s in series.values() for t, _ in s] + [t for t, _ in data.get("events", [])]
    t0, t1 = min(ts), max(ts)
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * (W - LEFT - RIGHT)

    def y(v: float, lo: float, hi: float, panel: int) -> float:
        top, bottom = PANELS[panel]
        v = min(max(v, lo), hi)
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">{escape(data.get("title", ""))}</text>']

    def axes(panel: int, lo: float, hi: float, ticks: list, label: str) -> None:
        top, bottom = PANELS[panel]
        out.append(f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{bottom - top}" '
                   'fill="none" stroke="#444"/>')
        for v in ticks:
            yy = y(v, lo, hi, panel)
            out.append(f'<line x1="{LEFT - 4}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
        out.append(f'<text x="16" y="{(top + bottom) / 2}" transform="rotate(-90 16 {(top + bottom) / 2})" '
                   f'text-anchor="middle">{escape(label)}</text>')

    def line(points: list, lo: float, hi: float, panel: int, color: str, width: float = 2, dash: str = "") -> None:
        if not points:
            return
        d = " ".join(f"{x(t):.1f},{y(v, lo, hi, panel):.1f}" for t, v in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>')

    axes(0, 0, 100, [0, 25, 50, 75, 100], "Contention Score")
    for key, color in (("threshold_on", "#c0392b"), ("threshold_off", "#e67e22")):
        if key in data:
            line([[t0, data[key]], [t1, data[key]]], 0, 100, 0, color, 1, "6 4")
            out.append(f'<text x="{W - RIGHT - 4}" y="{y(data[key], 0, 100, 0) - 4:.1f}" text-anchor="end" '
                       f'fill="{color}">{key.replace("_", " ")} {data[key]:g}</text>')
    line(series.get("score", []), 0, 100, 0, "#2c3e50")

    axes(1, 0, 1.2, [0, 0.5, 0.9, 1.0], "victim rate / solo")
    duty = series.get("aggressor_duty", [])
    if duty:
        line(duty, 0, 1.2, 1, "#bbb", 6)
    line(series.get("victim_rate", []), 0, 1.2, 1, "#27ae60")

    for i, (t, label) in enumerate(data.get("events", [])):
        xx = x(t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{PANELS[0][0]}" y2="{PANELS[1][1]}" '
                   'stroke="#8e44ad" stroke-dasharray="3 3"/>')
        out.append(f'<text x="{xx + 3:.1f}" y="{PANELS[1][0] - 8 - 12 * (i % 3):.1f}" fill="#8e44ad">'
                   f'{escape(label)}</text>')
    for t in range(int(t0), int(t1) + 1):
        if (t - int(t0)) % 10 == 0:
            out.append(f'<text x="{x(t):.1f}" y="{PANELS[1][1] + 16}" text-anchor="middle">{t - int(t0)}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle">seconds</text>')
    legend = [("#2c3e50", "score"), ("#27ae60", "victim rate / solo"), ("#bbb", "aggressor duty"),
              ("#8e44ad", "agent action")]
    for i, (color, name) in enumerate(legend):
        xx = LEFT + 10 + i * 170
        out.append(f'<rect x="{xx}" y="{PANELS[0][0] + 6}" width="14" height="4" fill="{color}"/>')
        out.append(f'<text x="{xx + 18}" y="{PANELS[0][0] + 12}">{escape(name)}</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
