#!/usr/bin/env python3
"""heapmap.py MAP SVG - draws a heap map (KHEAP_MAP=path of the LD_PRELOAD libraries, lines
"state address bytes [objects capacity object_size]") as an SVG: one row per page of the heap
(rows cover several pages when the heap is large, to stay within MAX_ROWS), green used, white free;
then one row per fixed_size_block slab, filled in proportion to its live objects. MAP may also be a
serial log of the kernel (kheap.map=1, or the heap_map kernel test): the first map between the lines
"kheap-map begin" and "kheap-map end" is drawn."""
import sys

PAGE, WIDTH, ROW, MAX_ROWS = 4096, 512, 3, 400
COLOUR = {"used": "#2e8b57", "free": "#f4f4f4", "slab": "#4169e1"}


def main(src, dst):
    lines = [line.strip() for line in open(src, errors="replace").read().split("\n")]
    if "kheap-map begin" in lines:
        start = lines.index("kheap-map begin") + 1
        lines = lines[start:lines.index("kheap-map end", start)]
    backend = lines[0].split()[1]
    spans, slabs = [], []
    for line in lines[1:]:
        f = line.split()
        if not f:
            continue
        e = (f[0], int(f[1], 16), int(f[2]))
        (slabs if f[0] == "slab" else spans).append((e, f[3:]))
    lo = min(a for (s, a, n), _ in spans)
    hi = max(a + n for (s, a, n), _ in spans)
    row_bytes = PAGE
    while (hi - lo) // row_bytes > MAX_ROWS:
        row_bytes *= 2
    rows = (hi - lo + row_bytes - 1) // row_bytes
    scale = WIDTH / row_bytes
    out = []
    for (state, addr, size), _ in spans:
        pos = addr - lo
        while size > 0:  # split at row boundaries
            r, x = divmod(pos, row_bytes)
            n = min(size, row_bytes - x)
            out.append('<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"/>'
                       % (x * scale, 20 + r * ROW, max(n * scale, 0.3), ROW, COLOUR[state]))
            pos, size = pos + n, size - n
    y = 30 + rows * ROW
    for (state, addr, size), extra in slabs:
        used, cap, osz = (int(v) for v in extra)
        out.append('<rect x="0" y="%d" width="%d" height="%d" fill="%s"/>' % (y, WIDTH, ROW, COLOUR["free"]))
        out.append('<rect x="0" y="%d" width="%.2f" height="%d" fill="%s"><title>%d/%d x %d B</title></rect>'
                   % (y, WIDTH * used / max(cap, 1), ROW, COLOUR["slab"], used, cap, osz))
        y += ROW + 1
    used = sum(n for (s, a, n), _ in spans if s == "used")
    title = "%s: %d KiB span, %d KiB used, one row = %d KiB%s" % (
        backend, (hi - lo) // 1024, used // 1024, row_bytes // 1024,
        ", then %d slabs (blue = live objects)" % len(slabs) if slabs else "")
    with open(dst, "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
                'font-size="11">\n<rect width="100%%" height="100%%" fill="white"/>\n'
                '<text x="0" y="12">%s</text>\n%s\n</svg>\n' % (WIDTH, y + 5, title, "\n".join(out)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: heapmap.py MAP SVG")
    main(sys.argv[1], sys.argv[2])
