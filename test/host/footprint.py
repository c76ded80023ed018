#!/usr/bin/env python3
"""footprint.py TRACE SVG - draws a footprint trace of kheap-bench (--footprint-trace TRACE: lines
"allocator step bytes_mapped bytes_in_use", '#' comments) as an SVG: one panel per allocator, in the
order of the trace, each with its own y scale (bump maps a thousand times more than the others on
workload c), the memory mapped as a filled area and the bytes in use as a line over it. The row
after the final frees (the largest step) is drawn as the last point. Python standard library only."""
import sys
from xml.sax.saxutils import escape

PANEL_W, PANEL_H, COLS = 300, 150, 2
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 34, 34  # margins of a panel's plot area
MAPPED, IN_USE = "#9ecae1", "#d62728"


def read_trace(path):
    """Returns [(allocator, [(step, mapped, in_use), ...])] in the order of the file."""
    series = {}
    for line in open(path):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if len(f) != 4:
            raise SystemExit("%s: bad line %r" % (path, line))
        series.setdefault(f[0], []).append((int(f[1]), int(f[2]), int(f[3])))
    return list(series.items())


def nice_ceiling(v):
    """The smallest 1, 2 or 5 x 10^k MiB (k may be negative) that holds v bytes: an axis maximum."""
    target = v / 2**20
    step = 1e-3
    while True:
        for m in (1, 2, 5):
            if m * step >= target:
                return m * step * 2**20
        step *= 10


def mib(v):
    return "%g" % round(v / 2**20, 3)


def panel(name, rows, x0, y0):
    w, h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    max_step = max(s for s, _, _ in rows) or 1
    ymax = nice_ceiling(max(max(m, u) for _, m, u in rows) or 1)

    def pt(step, v):
        return "%.1f,%.1f" % (x0 + LEFT + w * step / max_step, y0 + TOP + h - h * v / ymax)

    mapped = " ".join(pt(s, m) for s, m, _ in rows)
    in_use = " ".join(pt(s, u) for s, _, u in rows)
    base_l, base_r = pt(rows[0][0], 0), pt(rows[-1][0], 0)
    px, py = x0 + LEFT, y0 + TOP
    out = ['<g class="series" data-allocator="%s">' % escape(name),
           '<text x="%d" y="%d" font-weight="bold">%s</text>' % (px, y0 + 14, escape(name)),
           '<polygon fill="%s" points="%s %s %s"><title>bytes_mapped</title></polygon>'
           % (MAPPED, base_l, mapped, base_r),
           '<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"><title>bytes_in_use</title>'
           '</polyline>' % (IN_USE, in_use),
           '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (px, py, w, h)]
    for frac in (0, 0.5, 1):  # y ticks in MiB
        y = py + h - h * frac
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (px - 4, y + 4, mib(ymax * frac)))
    out.append('<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">MiB</text>'
               % (x0 + 12, py + h // 2, x0 + 12, py + h // 2))
    for frac in (0, 0.5, 1):  # x ticks in thousands of steps
        x = px + w * frac
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x, py + h + 13, max_step * frac / 1000))
    out.append('<text x="%d" y="%d" text-anchor="middle">step (thousands)</text>' % (px + w // 2, py + h + 27))
    out.append("</g>")
    return out


def main(src, dst):
    series = read_trace(src)
    if not series:
        raise SystemExit("%s: no samples" % src)
    rows_n = (len(series) + COLS - 1) // COLS
    width, height = COLS * PANEL_W, 46 + rows_n * PANEL_H
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="4" y="14" font-size="13">Footprint over time, workload c of kheap-bench: memory '
           'mapped vs bytes in use</text>',
           '<g class="legend"><rect x="4" y="24" width="14" height="8" fill="%s"/>'
           '<text x="22" y="32">bytes_mapped</text>' % MAPPED,
           '<line x1="120" y1="28" x2="134" y2="28" stroke="%s" stroke-width="2"/>'
           '<text x="138" y="32">bytes_in_use</text></g>' % IN_USE]
    for i, (name, rows) in enumerate(series):
        out += panel(name, rows, (i % COLS) * PANEL_W, 40 + (i // COLS) * PANEL_H)
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: footprint.py TRACE SVG")
    main(sys.argv[1], sys.argv[2])
