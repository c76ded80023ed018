#!/bin/sh
# Installs the Debian packages that building and testing kheap need, and
# returns at once when they are all present. Used by both README commands
# and by .ci/run. Needs root (or sudo) only when something is missing.
# tcmalloc, jemalloc and mimalloc: the peers kheap-bench measures our heaps against (loaded at run
# time with dlmopen; without them their rows say "not installed" and the bench_plot test fails).
set -eu

packages="cmake ninja-build gcc make clang lld libclang-rt-14-dev libcmocka-dev python3 git gdb
grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools
qemu-system-x86 ovmf clang-format valgrind
libgoogle-perftools-dev libtcmalloc-minimal4 libjemalloc-dev libmimalloc-dev"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
