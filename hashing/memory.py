"""The process's memory: how much is available, and glibc keeping what the process frees.
Needs no torch, so that commands which never run a network start quickly."""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    """Have glibc keep the memory this process frees for its next allocations instead of handing it
    back to the kernel. A forward pass on the CPU allocates and frees tens of megabytes of
    activations per batch; memory handed back returns as fresh pages, one page fault each (on a
    2-core VM, 10 million faults and 60% of the time of MobileNetV2 over 512 images at batch 64).
    The process's peak memory is unchanged; memory it frees is kept until it exits. Linux with glibc
    only; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_MAX, 0)  # large blocks from the heap too, not from mmap, which munmap hands back
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # never trim the heap's free top


def available_memory() -> int | None:
    """Bytes of memory new allocations can take without swapping (Linux's MemAvailable); None
    where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
