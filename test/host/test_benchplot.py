#!/usr/bin/env python3
"""test_benchplot.py BENCH WORKDIR ALLOCATORS - the benchmark plot end to end (ctest bench_plot): runs
BENCH (kheap-bench, which runs its hardened twin) for one short repetition of every workload, draws
the output with benchplot.py (next to this file), and asserts that the BENCH lines have every
allocator of the comma-separated list ALLOCATORS (plain backends, hardened twins, glibc, the peers)
on every workload, with min <= median <= max, a footprint on c, p and k, glibc's ratio to itself 1,
each vs_X_min the ratio of the row's minimum to X's, and that the SVG is well-formed XML with one series per allocator whose bars carry the BENCH
values: one ns/op bar per workload and one footprint bar per workload that has a footprint; and that
benchplot.py's sibling benchtable.py prints a Markdown table per workload with one row per allocator
showing its BENCH median and spread."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

STEPS = 10000
WORKLOADS = "abcpk"
SVG_NS = "{http://www.w3.org/2000/svg}"


def fail(msg):
    sys.exit("FAILED: " + msg)


def main(bench, workdir, allocators):
    expected = allocators.split(",")
    os.makedirs(workdir, exist_ok=True)
    out, svg = os.path.join(workdir, "bench.txt"), os.path.join(workdir, "bench.svg")
    with open(out, "w") as f:
        subprocess.run([bench, "1", "--steps", str(STEPS)], check=True, stdout=f)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "benchplot.py"), out, svg], check=True)

    rows = {}
    for line in open(out):
        f = line.split()
        if f[:1] != ["BENCH"] or f[1] == "allocator=pointer_increment":
            continue
        kv = dict(x.split("=", 1) for x in f[1:])
        rows.setdefault((kv["allocator"], kv["workload"]), kv)  # the twin's reference rows come second
    names = list(dict.fromkeys(a for a, _ in rows))
    if names != expected:
        fail("BENCH allocators %s, expected %s (a peer not installed? run cmake/deps.sh)" % (names, expected))
    for a in expected:
        for w in WORKLOADS:
            kv = rows.get((a, w))
            if kv is None:
                fail("no BENCH line for %s on %s" % (a, w))
            lo, med, hi = float(kv["min"]), float(kv["ns_per_op"]), float(kv["max"])
            if not 0 < lo <= med <= hi:
                fail("%s %s: min %s, median %s, max %s" % (a, w, lo, med, hi))
            has_fp = kv["footprint_ratio"] != "-"
            if has_fp != (w in "cpk"):
                fail("%s %s: footprint_ratio=%s" % (a, w, kv["footprint_ratio"]))
            if has_fp and not (int(kv["mapped"]) > 0 and int(kv["peak_live"]) > 0
                               and abs(float(kv["footprint_ratio"]) - int(kv["mapped"]) / int(kv["peak_live"])) < 0.01):
                fail("%s %s: footprint %s != mapped %s / peak_live %s"
                     % (a, w, kv["footprint_ratio"], kv["mapped"], kv["peak_live"]))
            if a == "system" and float(kv["vs_system"]) != 1.0:
                fail("system %s: vs_system=%s" % (w, kv["vs_system"]))
    for (a, w), kv in rows.items():  # vs_X_min: this row's minimum / X's minimum (printed to 0.01 ns)
        if a.endswith("_hardened"):  # the twin's ratios are to its own reference rows
            continue
        for peer in ("system", "tcmalloc", "mimalloc", "jemalloc"):
            got, ref = kv.get("vs_%s_min" % peer), rows.get((peer, w))
            if got is None:
                fail("%s %s: no vs_%s_min" % (a, w, peer))
            if ref is None:
                continue
            lo, rmin = float(kv["min"]), float(ref["min"])
            if not (lo - 0.005) / (rmin + 0.005) - 0.001 <= float(got) <= (lo + 0.005) / (rmin - 0.005) + 0.001:
                fail("%s %s: vs_%s_min=%s, but min %s / %s" % (a, w, peer, got, kv["min"], ref["min"]))
    print("bench: %d allocators x %d workloads, spreads and footprints consistent" % (len(expected), len(WORKLOADS)))

    root = ET.parse(svg).getroot()  # raises on malformed XML
    series = [g for g in root.iter(SVG_NS + "g") if g.get("class") == "series"]
    if [g.get("data-allocator") for g in series] != expected:
        fail("SVG series %s, expected %s" % ([g.get("data-allocator") for g in series], expected))
    for g in series:
        a = g.get("data-allocator")
        titles = sorted(t.text for t in g.iter(SVG_NS + "title"))
        want = sorted(["%s workload=%s ns_per_op=%s" % (a, w, rows[(a, w)]["ns_per_op"]) for w in WORKLOADS] +
                      ["%s workload=%s footprint_ratio=%s" % (a, w, rows[(a, w)]["footprint_ratio"]) for w in "cpk"])
        if titles != want:
            fail("series %s: bars %s, expected %s" % (a, titles, want))
    print("svg: well-formed, one series per allocator with its ns/op and footprint bars: ok")

    table = subprocess.run([sys.executable, os.path.join(here, "benchtable.py"), out], check=True,
                           capture_output=True, text=True).stdout
    for w in WORKLOADS:
        block = table.split("**Workload %s:" % w)
        if len(block) != 2:
            fail("table: no section for workload %s" % w)
        lines = [ln for ln in block[1].split("\n\n", 2)[1].split("\n") if ln.startswith("| ")][1:]
        got = [ln.split(" | ")[0][2:] for ln in lines]
        want = [("glibc (system)" if a == "system" else a) for a in expected]
        if [g for g in got if g != "pointer_increment"] != want:
            fail("table %s: rows %s, expected %s" % (w, got, want))
        for a in expected:
            ln = lines[got.index("glibc (system)" if a == "system" else a)]
            if " %s (%s–%s) " % (rows[(a, w)]["ns_per_op"], rows[(a, w)]["min"], rows[(a, w)]["max"]) not in ln:
                fail("table %s: row %s does not show the BENCH median and spread" % (w, a))
    print("table: one row per allocator per workload, with the BENCH median and spread: ok")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: test_benchplot.py BENCH WORKDIR ALLOCATORS")
    main(*sys.argv[1:])
