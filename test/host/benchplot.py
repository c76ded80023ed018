#!/usr/bin/env python3
"""benchplot.py BENCH_OUTPUT SVG - draws the BENCH lines of a kheap-bench run (plain and hardened
twin; other lines are ignored) as an SVG: a row of panels with ns/op per allocator, one panel per
workload, and a row with the footprint (memory from the OS / peak live bytes) of the workloads that
have one. Every panel has its own linear scale; a bar taller than three times the panel's median is
cut at the top and labelled with its value (bump on c and p, which never reuses memory there). Each
allocator is one <g class="series" data-allocator=NAME> whose bars carry <title>s "NAME workload=W
ns_per_op=V" / "NAME workload=W footprint_ratio=V". Python standard library only."""
import sys
from xml.sax.saxutils import escape

PANEL_W, PANEL_H = 250, 190
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 30, 16
# One colour per allocator, in the order of the run; peers in grey tones after ours.
PALETTE = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#ff7f0e", "#7f7f7f", "#393b79", "#637939", "#843c39", "#7b4173"]
SKIP = {"pointer_increment"}


def read_bench(path, skip=SKIP):
    """Returns (allocators in order of appearance, {(allocator, workload): {field: value}}). A row
    printed twice (the hardened twin's reference rows: glibc and the peers again) keeps the first."""
    order, rows = [], {}
    for line in open(path):
        f = line.split()
        if not f or f[0] != "BENCH" or not f[1].startswith("allocator="):
            continue
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        if "workload" not in kv or "ns_per_op" not in kv or kv["allocator"] in skip:
            continue
        name = kv["allocator"]
        if name not in order:
            order.append(name)
        rows.setdefault((name, kv["workload"]), kv)
    return order, rows


def nice_ceiling(v):
    """The smallest 1, 2, 2.5 or 5 x 10^k that holds v: an axis maximum."""
    step = 1e-3
    while True:
        for m in (1, 2, 2.5, 5):
            if m * step >= v:
                return m * step
        step *= 10


def fmt(v):
    return "%d" % round(v) if v >= 1000 else "%.3g" % v


def panel(title, x0, y0, values, unit):
    """Axes of one panel; returns (svg elements, bar placer (i, n) -> (x, width), y scaler, ymax)."""
    w, h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    vals = sorted(v for v in values if v is not None)
    median = vals[len(vals) // 2] if vals else 1
    ymax = nice_ceiling(min(vals[-1], 3 * median) if vals else 1) or 1
    px, py = x0 + LEFT, y0 + TOP
    out = ['<text x="%d" y="%d" font-weight="bold">%s</text>' % (px, y0 + 18, escape(title)),
           '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (px, py, w, h)]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = py + h - h * frac
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (px, y, px + w, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (px - 3, y + 4, fmt(ymax * frac)))
    out.append('<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>'
               % (x0 + 10, py + h // 2, x0 + 10, py + h // 2, unit))

    def bar(i, n):
        slot = w / n
        return px + slot * i + slot * 0.1, slot * 0.8

    def scale(v):
        return h * min(v, ymax) / ymax, v > ymax

    return out, bar, scale, (px, py, h)


def main(src, dst):
    order, rows = read_bench(src)
    if not rows:
        raise SystemExit("%s: no BENCH lines" % src)
    workloads = sorted({w for _, w in rows}, key=lambda w: "abcpke".find(w))
    fp_workloads = [w for w in workloads if any(rows[k].get("footprint_ratio", "-") != "-"
                                                for k in rows if k[1] == w)]
    cols = max(len(workloads), len(fp_workloads))
    width = cols * PANEL_W
    legend_rows = (len(order) + 4) // 5
    height = 40 + legend_rows * 16 + PANEL_H * (2 if fp_workloads else 1)
    top = 40 + legend_rows * 16
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(order)}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="10">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="4" y="16" font-size="13">kheap-bench: ns per operation (median; lower is better) and '
           'footprint (memory from the OS / peak live bytes)</text>', '<g class="legend">']
    for i, a in enumerate(order):
        lx, ly = 4 + (i % 5) * (width // 5), 28 + (i // 5) * 16
        out.append('<rect x="%d" y="%d" width="12" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (lx, ly, colour[a], lx + 16, ly + 9, escape(a)))
    out.append("</g>")

    bars = {a: [] for a in order}
    for row, (ws, field, unit) in enumerate(((workloads, "ns_per_op", "ns/op"),
                                            (fp_workloads, "footprint_ratio", "from OS / peak live"))):
        for c, w in enumerate(ws):
            present = [a for a in order if (a, w) in rows and rows[(a, w)].get(field, "-") != "-"]
            values = [float(rows[(a, w)][field]) for a in present]
            title = ("workload %s" if field == "ns_per_op" else "footprint, workload %s") % w
            axes, bar, scale, (px, py, h) = panel(title, c * PANEL_W, top + row * PANEL_H, values, unit)
            out += axes
            for i, a in enumerate(present):
                v = float(rows[(a, w)][field])
                x, bw = bar(i, len(present))
                bh, cut = scale(v)
                el = ('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s workload=%s %s=%s'
                      '</title></rect>' % (x, py + h - bh, bw, bh, colour[a], escape(a), w, field, rows[(a, w)][field]))
                if cut:
                    el += ('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="8">%s</text>'
                           % (x + bw / 2, py + 10 + 9 * (i % 2), fmt(v)))
                bars[a].append(el)
    for a in order:
        out.append('<g class="series" data-allocator="%s">' % escape(a))
        out += bars[a]
        out.append("</g>")
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: benchplot.py BENCH_OUTPUT SVG")
    main(sys.argv[1], sys.argv[2])
