#!/usr/bin/env python3
"""test_footprint.py BENCH WORKDIR ALLOCATORS - the footprint plot end to end (ctest footprint_plot):
runs BENCH --footprint-trace on a short workload c, draws it with footprint.py (next to this file),
and asserts that the trace has every allocator of the comma-separated list ALLOCATORS (plain backends,
their hardened twins, system) with bytes_in_use <= bytes_mapped at every sample, and that the SVG is
well-formed XML with one series per allocator, each with both curves."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

STEPS = 20000
SVG_NS = "{http://www.w3.org/2000/svg}"


def fail(msg):
    sys.exit("FAILED: " + msg)


def main(bench, workdir, allocators):
    expected = allocators.split(",")
    os.makedirs(workdir, exist_ok=True)
    trace, svg = os.path.join(workdir, "footprint.txt"), os.path.join(workdir, "footprint.svg")
    subprocess.run([bench, "--footprint-trace", trace, "--steps", str(STEPS)], check=True)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "footprint.py"), trace, svg], check=True)

    rows = {}
    for line in open(trace):
        if line.startswith("#"):
            continue
        name, step, mapped, in_use = line.split()
        rows.setdefault(name, []).append((int(step), int(mapped), int(in_use)))
    if list(rows) != expected:
        fail("trace allocators %s, expected %s" % (list(rows), expected))
    for name, r in rows.items():
        bad = [x for x in r if x[2] > x[1]]
        if bad:
            fail("%s: bytes_in_use > bytes_mapped at steps %s" % (name, [x[0] for x in bad[:5]]))
        if len(r) < 100 or r[-1][0] != STEPS + 1 or any(a[0] >= b[0] for a, b in zip(r, r[1:])):
            fail("%s: %d samples, last step %d: not every %d-step sample plus the final one"
                 % (name, len(r), r[-1][0], STEPS))
        if max(u for _, _, u in r) == 0:
            fail("%s: nothing was ever in use" % name)
        if name != "system" and r[-1][2] != 0:
            fail("%s: %d bytes in use after the final frees" % (name, r[-1][2]))
    print("trace: %d allocators, %d samples each, in_use <= mapped everywhere" % (len(rows), len(r)))

    root = ET.parse(svg).getroot()  # raises on malformed XML
    series = [g for g in root.iter(SVG_NS + "g") if g.get("class") == "series"]
    names = [g.get("data-allocator") for g in series]
    if names != expected:
        fail("SVG series %s, expected %s" % (names, expected))
    for g in series:
        titles = sorted(t.text for t in g.iter(SVG_NS + "title"))
        if titles != ["bytes_in_use", "bytes_mapped"]:
            fail("series %s has curves %s" % (g.get("data-allocator"), titles))
        points = [e.get("points").split() for e in g if e.tag in (SVG_NS + "polygon", SVG_NS + "polyline")]
        if len(points) != 2 or len(points[1]) != len(rows[g.get("data-allocator")]):
            fail("series %s: not one point per sample" % g.get("data-allocator"))
    print("svg: well-formed, one series per allocator, each with mapped and in-use curves: ok")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: test_footprint.py BENCH WORKDIR ALLOCATORS")
    main(*sys.argv[1:])
