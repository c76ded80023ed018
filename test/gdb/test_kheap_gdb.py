"""Run inside gdb -batch (see test/gdb/run.cmake): attaches to a paused kernel on the unix socket
named by $KHEAP_GDB_SOCKET, stops in kvec_free() of the demo (one live block: the vector's 1000
uint64_t) and asserts the output of every command of cmake/gdb/kheap.py."""
import os
import re
import time

import gdb

sock = os.environ["KHEAP_GDB_SOCKET"]
for _ in range(600):  # QEMU creates the socket within a moment; bounded wait on that condition
    if os.path.exists(sock):
        break
    time.sleep(0.05)


def run(cmd):
    out = gdb.execute(cmd, to_string=True)
    print(out, end="")
    return out


def expect(cond, what):
    if not cond:
        raise gdb.GdbError("FAILED: " + what)
    print("ok:", what)


gdb.execute("target remote " + sock)
gdb.execute("break kvec_free")
gdb.execute("continue")
data = int(gdb.parse_and_eval("(unsigned long)v->data"))

out = run("kheap stats")
backend = re.search(r"backend (\w+)", out).group(1)
expect(re.search(r"live_allocs +1\n", out), "stats: the vector is the one live block")
expect(re.search(r"bytes_in_use +8[0-9]{3}\n", out), "stats: 8 KiB in use")
expect(re.search(r"errors_detected +0\n", out), "stats: no errors")

out = run("kheap walk")
rows = [(int(a, 16), int(s), st) for a, s, st in re.findall(r"^(0x[0-9a-f]+) +(\d+) (\w+)", out, re.M)]
expect(len(rows) >= 2, "walk: lists blocks")
expect(any(st == "used" and a <= data < a + s for a, s, st in rows), "walk: a used block holds v->data")
expect(any(st == "free" for a, s, st in rows), "walk: free memory is listed")
if backend == "fixed_size_block":
    # Objects a CPU's per-CPU cache holds (the demo's freed box) still count as taken from their slab.
    expect(re.search(r"slab \d+/1016 objects of 16 bytes", out), "walk: 16-byte slab with occupancy")

out = run("kheap check")
expect("0 broken invariants (healthy)" in out, "check: kmalloc_check() says healthy")

out = run("kheap block v->data+100")
m = re.search(r"is in used block (0x[0-9a-f]+) \((\d+) bytes\), offset (\d+)", out)
expect(m is not None and int(m.group(1), 16) + int(m.group(3)) == data + 100, "block: right block and offset")
out = run("kheap block 0x1000")
expect("is not in the heap" in out, "block: an address outside the heap")

out = run("pt v->data")
expect(len(re.findall(r"^  (PML4|PDPT|PD|PT) *\[", out, re.M)) == 4, "pt: four levels for a heap page")
expect(re.search(r"PT  \[ *\d+\] .* P W .*NX", out), "pt: heap page present, writable, no-execute")
phys = int(re.search(r"phys (0x[0-9a-f]+) \(4 KiB page\)", out).group(1), 16)
inf = gdb.selected_inferior()
via_va = inf.read_memory(data + 40, 8).tobytes()
via_dm = inf.read_memory(0xFFFF800000000000 + phys + 40, 8).tobytes()
expect(via_va == via_dm == (5).to_bytes(8, "little"), "pt: element 5 reads 5 through the physical address")
out = run("pt 0xffffe00000000000")
expect("not mapped" in out, "pt: KTEST_UNMAPPED_ADDR is not mapped")

gdb.execute("delete")
gdb.execute("detach")
print("kheap gdb test: all ok")
