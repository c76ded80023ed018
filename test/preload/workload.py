"""A short, deterministic Python workload for the LD_PRELOAD tests: its output must be identical
under glibc's malloc and under every kheap library (run with PYTHONMALLOC=malloc, so every object
allocation goes through malloc)."""
import collections
import decimal
import hashlib
import json
import re
import threading
import zlib

# Many small objects that live and die in a mixed order.
rng = 12345
words = []
for i in range(40000):
    rng = (rng * 1103515245 + 12345) % (1 << 31)
    words.append("w%x" % (rng % 5000))
counts = collections.Counter(words)
print("distinct", len(counts), "top", counts.most_common(3))

# JSON round trip of a nested structure.
doc = {"k%d" % i: [i, str(i) * (i % 7), {"n": i * 1.5}] for i in range(3000)}
text = json.dumps(doc, sort_keys=True)
print("json", len(text), json.loads(text) == doc, hashlib.sha256(text.encode()).hexdigest()[:16])

# Regular expressions and string building.
found = re.findall(r"w([0-9a-f]{3})\b", " ".join(words[:5000]))
print("re", len(found), sorted(set(found))[:4])

# Growing and shrinking buffers (realloc paths).
blob = bytearray()
for i in range(2000):
    blob += bytes([i % 251]) * (i % 97)
    if i % 5 == 0:
        del blob[: len(blob) // 3]
print("blob", len(blob), zlib.crc32(bytes(blob)))
packed = zlib.compress(bytes(blob) * 20, 9)
print("zlib", len(packed), zlib.decompress(packed) == bytes(blob) * 20)

# Arbitrary precision.
decimal.getcontext().prec = 200
print("decimal", str(decimal.Decimal(2).sqrt())[:40])

# Threads allocating concurrently (the heap lock).
results = [None] * 4


def worker(n):
    acc = []
    for i in range(20000):
        acc.append(("t%d" % n) * (i % 13))
        if len(acc) > 500:
            acc = acc[250:]
    results[n] = sum(len(s) for s in acc)


threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("threads", results)
