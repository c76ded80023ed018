"""kheap.py - gdb commands for a paused kheap kernel (loaded by the command `debug` prints).

  kheap stats        the kmalloc heap's counters (kmalloc_stats(), called in the inferior)
  kheap walk         every block of the active backend with its state (kheap_debug_walk() in the
                     inferior: the backend's own heap_walk(), so it is right for every backend)
  kheap check        heap invariants: calls kmalloc_check() in the inferior (the C checker itself,
                     hardened canary/poison checks included; a report in hardened mode panics)
  kheap block ADDR   the block ADDR belongs to, its state (and slab / object for fixed_size_block);
                     hardened kernels: the block's requested size and its allocation site, or the
                     free site of a freed block, symbolized (heap_block_info() via kheap_debug_block())
  pt ADDR            walks the page tables for virtual address ADDR from CR3: each level's entry
                     and flags, and the physical address (tables read through the direct map)

The inferior calls need the kernel stopped at a point where no heap call is in progress (e.g. a
breakpoint outside src/alloc); they run the vCPU briefly and return.
"""
import gdb

DIRECT_MAP_BASE = 0xFFFF800000000000  # src/memlayout.h
PAGE_SIZE = 4096
STATE = {0: "free", 1: "used", 2: "slab"}
PTE_FLAGS = [(0, "P"), (1, "W"), (2, "U"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"), (7, "PS"),
             (8, "G"), (63, "NX")]
LEVELS = [("PML4", 39), ("PDPT", 30), ("PD", 21), ("PT", 12)]
ADDR_MASK = 0x000FFFFFFFFFF000


def u64(value):
    return int(value) & 0xFFFFFFFFFFFFFFFF


def walk_entries():
    """Yields the kmalloc heap's walk as dicts, 256 entries per inferior call."""
    skip = 0
    while True:
        total = int(gdb.parse_and_eval("kheap_debug_walk(%d)" % skip))
        count = int(gdb.parse_and_eval("kheap_debug_count"))
        entries = gdb.parse_and_eval("kheap_debug_entries")
        for i in range(count):
            e = entries[i]
            yield {"addr": u64(e["addr"]), "size": int(e["size"]), "state": STATE.get(int(e["state"]), "?"),
                   "objects": int(e["objects"]), "capacity": int(e["capacity"]),
                   "object_size": int(e["object_size"])}
        skip += count
        if count == 0 or skip >= total:
            return


def describe(e):
    text = "%#018x %10d %s" % (e["addr"], e["size"], e["state"])
    if e["state"] == "slab":
        text += " %d/%d objects of %d bytes" % (e["objects"], e["capacity"], e["object_size"])
    elif e["objects"]:
        text += " (%d live blocks)" % e["objects"]
    return text


class Kheap(gdb.Command):
    """kheap stats | walk | check | block ADDR: inspect the kernel heap (see cmake/gdb/kheap.py)."""

    def __init__(self):
        super().__init__("kheap", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class KheapStats(gdb.Command):
    """The kmalloc heap's counters (struct heap_stats) and its backend."""

    def __init__(self):
        super().__init__("kheap stats", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        backend = gdb.parse_and_eval("kmalloc_backend_name()").string()
        s = gdb.parse_and_eval("kmalloc_stats()")
        gdb.write("kheap stats (backend %s)\n" % backend)
        for f in s.type.fields():
            gdb.write("  %-16s %d\n" % (f.name, int(s[f.name])))


class KheapWalk(gdb.Command):
    """Every block of the active backend: address, size, state."""

    def __init__(self):
        super().__init__("kheap walk", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        n = used = free = 0
        gdb.write("%-18s %10s state\n" % ("address", "bytes"))
        for e in walk_entries():
            gdb.write(describe(e) + "\n")
            n += 1
            used += e["size"] if e["state"] == "used" else 0
            free += e["size"] if e["state"] == "free" else 0
        gdb.write("kheap walk: %d entries, %d bytes used, %d bytes free\n" % (n, used, free))


class KheapCheck(gdb.Command):
    """Runs the heap's invariant checker, kmalloc_check(), in the inferior."""

    def __init__(self):
        super().__init__("kheap check", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        bad = int(gdb.parse_and_eval("kmalloc_check()"))
        gdb.write("kheap check: %d broken invariants (%s)\n" % (bad, "healthy" if bad == 0 else "CORRUPT"))


class KheapBlock(gdb.Command):
    """kheap block ADDR: the block (and slab object) containing ADDR, its state, and in a hardened
    kernel its requested size and allocation or free site."""

    def __init__(self):
        super().__init__("kheap block", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        addr = u64(gdb.parse_and_eval(arg))
        block = slab = None
        for e in walk_entries():
            if e["addr"] <= addr < e["addr"] + e["size"]:
                if e["state"] == "slab":
                    slab = e
                else:
                    block = e
        if block is None and slab is None:
            gdb.write("kheap block: %#x is not in the heap\n" % addr)
            return
        if block is not None:
            gdb.write("kheap block: %#x is in %s block %#x (%d bytes), offset %d\n"
                      % (addr, block["state"], block["addr"], block["size"], addr - block["addr"]))
        if slab is not None:
            gdb.write("kheap block: %#x is in slab %#x: %d/%d objects of %d bytes\n"
                      % (addr, slab["addr"], slab["objects"], slab["capacity"], slab["object_size"]))
        if int(gdb.parse_and_eval("heap_hardening()")):
            lo = (slab or block)["addr"]
            describe_sites(addr, int(gdb.parse_and_eval("kheap_debug_block(%d, %d)" % (addr, lo))))


def symbolize(pc):
    """A call site (a return address) as gdb knows it: address <function+offset> [in inlined function]
    at file:line."""
    if pc == 0:
        return "unknown"
    text, name = "%#x" % pc, None
    sym = gdb.execute("info symbol %#x" % pc, to_string=True).strip()
    if not sym.startswith("No symbol"):
        name, _, offset = sym.split(" in section")[0].partition(" + ")
        text += " <%s+%s>" % (name, offset or "0")
    try:  # the call instruction ends at the return address: look up the byte before it
        block = gdb.block_for_pc(pc - 1)
    except RuntimeError:
        block = None
    while block is not None and block.function is None:
        block = block.superblock
    if block is not None and block.function.name != name:  # the call is in a function inlined there
        text += " in %s (inlined)" % block.function.name
    sal = gdb.find_pc_line(pc - 1)
    if sal.symtab is not None:
        text += " at %s:%d" % (sal.symtab.filename, sal.line)
    return text


def describe_sites(addr, found):
    """Hardened heap: what kheap_debug_block() found for addr (heap_block_info(): trailer, sites)."""
    f = gdb.parse_and_eval("kheap_debug_found")
    info, ptr = f["info"], u64(f["ptr"])
    kind = str(info["kind"])
    if found != 1:
        gdb.write("kheap block: hardened heap: %#x is not inside a block (a header, padding or never "
                  "handed out)\n" % addr)
    elif kind == "HEAP_PTR_LIVE":
        gdb.write("kheap block: live block %#x: %d bytes requested (%d held), offset %d\n"
                  % (ptr, int(info["size"]), int(info["usable"]), addr - ptr))
        gdb.write("kheap block: allocated at %s\n" % symbolize(u64(info["alloc_site"])))
    elif kind == "HEAP_PTR_FREED" and ptr != 0:
        gdb.write("kheap block: freed block %#x, offset %d\n" % (ptr, addr - ptr))
        gdb.write("kheap block: freed at %s\n" % symbolize(u64(info["free_site"])))
    elif kind == "HEAP_PTR_FREED":
        gdb.write("kheap block: freed memory; the block freed here is gone (merged, rolled back or "
                  "reset), so no site is kept\n")
    else:
        gdb.write("kheap block: the block at %#x fails validation (%s): run kheap check\n" % (ptr, kind))


def flags(entry):
    return " ".join(name for bit, name in PTE_FLAGS if entry >> bit & 1)


def read_u64_phys(phys):
    inferior = gdb.selected_inferior()
    return int.from_bytes(inferior.read_memory(DIRECT_MAP_BASE + phys, 8).tobytes(), "little")


class PageTableWalk(gdb.Command):
    """pt ADDR: walks the 4-level page tables for virtual address ADDR (CR3 from the inferior)."""

    def __init__(self):
        super().__init__("pt", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        va = u64(gdb.parse_and_eval(arg))
        cr3 = u64(gdb.parse_and_eval("$cr3"))
        table = cr3 & ADDR_MASK
        gdb.write("pt %#x: cr3 %#x\n" % (va, cr3))
        for name, shift in LEVELS:
            index = (va >> shift) & 511
            entry = read_u64_phys(table + 8 * index)
            gdb.write("  %-4s[%3d] @phys %#x = %#018x  %s\n" % (name, index, table + 8 * index, entry, flags(entry)))
            if not entry & 1:
                gdb.write("pt %#x: not mapped (%s entry not present)\n" % (va, name))
                return
            if name != "PT" and name != "PML4" and entry >> 7 & 1:  # PS: a 1 GiB or 2 MiB page
                span = 1 << shift
                phys = (entry & ADDR_MASK & ~(span - 1)) + (va & (span - 1))
                gdb.write("pt %#x: phys %#x (%s page)\n" % (va, phys, "1 GiB" if name == "PDPT" else "2 MiB"))
                return
            table = entry & ADDR_MASK
        phys = table + (va & (PAGE_SIZE - 1))
        gdb.write("pt %#x: phys %#x (4 KiB page)\n" % (va, phys))


Kheap()
KheapStats()
KheapWalk()
KheapCheck()
KheapBlock()
PageTableWalk()
