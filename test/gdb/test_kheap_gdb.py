"""Run inside gdb -batch (see test/gdb/run.cmake): attaches to a paused kernel on the unix socket
named by $KHEAP_GDB_SOCKET, stops in kvec_free() of the demo (one live block: the vector's 1000
uint64_t) and asserts the output of every command of cmake/gdb/kheap.py, including what is specific
to the image's backend ($KHEAP_GDB_BACKEND: fixed_size_block slabs, bump's two spans, linked_list's
blocks) and mode ($KHEAP_GDB_MODE: the requested size and allocation site `kheap block` shows in a
hardened kernel); then steps out of kvec_free() and asks `kheap block` about the freed vector."""
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
data_bytes = int(gdb.parse_and_eval("v->cap * v->elem_size"))
want_backend, hardened = os.environ["KHEAP_GDB_BACKEND"], os.environ["KHEAP_GDB_MODE"] == "hardened"
expect(int(gdb.parse_and_eval("heap_hardening()")) == hardened, "the image's heap mode is " + os.environ["KHEAP_GDB_MODE"])

out = run("kheap stats")
backend = re.search(r"backend (\w+)", out).group(1)
expect(backend == want_backend, "stats: backend " + want_backend)
expect(re.search(r"live_allocs +1\n", out), "stats: the vector is the one live block")
expect(re.search(r"bytes_in_use +8[0-9]{3}\n", out), "stats: 8 KiB in use")
expect(re.search(r"errors_detected +0\n", out), "stats: no errors")
frees = int(re.search(r"total_frees +(\d+)\n", out).group(1))

out = run("kheap walk")
rows = [(int(a, 16), int(s), st) for a, s, st in re.findall(r"^(0x[0-9a-f]+) +(\d+) (\w+)", out, re.M)]
expect(len(rows) >= 2, "walk: lists blocks")
expect(any(st == "used" and a <= data < a + s for a, s, st in rows), "walk: a used block holds v->data")
expect(any(st == "free" for a, s, st in rows), "walk: free memory is listed")
if backend == "fixed_size_block":
    slabs = re.findall(r"^0x[0-9a-f]+ +\d+ slab (\d+)/(\d+) objects of (\d+) bytes$", out, re.M)
    expect(slabs and all(int(n) <= int(cap) for n, cap, _ in slabs), "walk: slabs with occupancy")
    if hardened:  # freed small blocks are held in the quarantine: used to the slab, not live
        expect(0 < sum(int(n) for n, _, _ in slabs) <= frees, "walk: slabs hold only quarantined blocks")
    else:  # a CPU's per-CPU cache may still hold some of the freed small blocks: taken from their slab
        expect(any(cap == "1016" and size == "16" for _, cap, size in slabs) or all(n == "0" for n, _, _ in slabs),
               "walk: every slab empty, or a 16-byte slab holds cached objects")
    expect(any(st == "used" and a <= data < a + s and s >= data_bytes for a, s, st in rows),
           "walk: the vector is a large block of the fallback heap")
elif backend == "bump":
    expect(len(rows) == 2 and rows[0][2] == "used" and rows[1][2] == "free" and rows[0][0] + rows[0][1] == rows[1][0],
           "walk: bump is two adjacent spans, consumed then free")
    expect(re.search(r"^0x[0-9a-f]+ +\d+ used \(1 live blocks\)$", out, re.M), "walk: one live block in the span")
else:
    expect(not re.search(r"slab|live blocks", out), "walk: linked_list lists plain blocks only")
    expect(all(a + s == b for (a, s, _), (b, _, _) in zip(rows, rows[1:]) if b > a),
           "walk: the blocks of a region tile it")
out = run("kheap check")
expect("0 broken invariants (healthy)" in out, "check: kmalloc_check() says healthy")

out = run("kheap block v->data+100")
m = re.search(r"is in used block (0x[0-9a-f]+) \((\d+) bytes\), offset (\d+)", out)
expect(m is not None and int(m.group(1), 16) + int(m.group(3)) == data + 100, "block: right block and offset")
if hardened:
    expect(re.search(r"live block %#x: %d bytes requested \(\d+ held\), offset 100\n" % (data, data_bytes), out),
           "block: hardened: the live block's start and requested size")
    # kvec_reserve() calls krealloc(); the compiler may inline it into kvec_push().
    expect(re.search(r"allocated at 0x[0-9a-f]+ <kvec_(push|reserve)\+\d+>( in kvec_reserve \(inlined\))? "
                     r"at \S*src/alloc/kvec\.c:\d+\n", out) and "kvec_reserve" in out,
           "block: hardened: allocation site symbolized (kvec_reserve, kvec.c)")
else:
    expect("allocated at" not in out and "requested" not in out, "block: plain: no sites (none are kept)")
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

# Out of kvec_free(): the vector's memory is freed now.
gdb.execute("delete")
gdb.execute("finish")
out = run("kheap block %#x" % (data + 100))
if not hardened:
    expect("freed" not in out, "freed block: plain: nothing is known of frees")
elif backend == "bump":
    # The vector was the last live block: its free reset the region, which keeps no blocks.
    expect(re.search(r"is in free block", out) and "the block freed here is gone" in out,
           "freed block: bump: the reset left free memory and no site")
elif backend == "linked_list":
    m = re.search(r"freed block (0x[0-9a-f]+), offset 100\n", out)
    expect(m and int(m.group(1), 16) == data, "freed block: linked_list: the vector's block, still a block")
    expect(re.search(r"freed at 0x[0-9a-f]+ <kvec_free\+\d+> at \S*src/alloc/kvec\.c:\d+\n", out),
           "freed block: linked_list: free site symbolized (kvec_free, kvec.c)")
else:
    # Without a quarantine the heap gave pages back earlier, so fixed_size_block is draining: the
    # vector went straight to the fallback and merged with its free neighbour (no large-block cache
    # entry, no site left). With it (the default) the frees that gave pages back came later, at the
    # drain: the vector is in the large-block cache, which keeps its free site.
    m = re.search(r"freed block (0x[0-9a-f]+), offset 100\n", out)
    expect("the block freed here is gone" in out
           or (m and int(m.group(1), 16) == data and re.search(r"freed at 0x[0-9a-f]+ <kvec_free\+\d+>", out)),
           "freed block: fixed_size_block: merged into the fallback, or cached with its free site")
if backend == "fixed_size_block":
    # The demo's box (4 bytes, printed on serial) was freed into a slab, which keeps each free
    # object's free site next to its link.
    box = int(re.search(r"box: value 41 at (0x[0-9a-f]+)", open(os.environ["KHEAP_GDB_SERIAL"]).read()).group(1), 16)
    out = run("kheap block %#x" % (box + 2))
    # Plain images keep a per-CPU cache in front of the slabs: the freed box may still be counted as
    # taken from its slab there; hardened heaps have no per-CPU caches, so their slab is empty.
    m = re.search(r"is in slab 0x[0-9a-f]+: (\d+)/\d+ objects of \d+ bytes", out)
    expect(m and (not hardened or m.group(1) == "0"), "box: in its slab (empty in a hardened image)")
    if hardened:
        m = re.search(r"freed block (0x[0-9a-f]+), offset 2\n", out)
        expect(m and int(m.group(1), 16) == box, "box: hardened: the freed object")
        expect(re.search(r"freed at 0x[0-9a-f]+ <\w+\+\d+>.* at \S*src/alloc/kbox\.h:\d+\n", out)
               and "kbox_release" in out, "box: hardened: free site symbolized (kbox_release, kbox.h)")
out = run("kheap check")
expect("0 broken invariants (healthy)" in out, "check: healthy after the free")

gdb.execute("detach")
print("kheap gdb test: all ok")
