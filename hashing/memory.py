"""The process's memory: how much is available, what a batch of images needs, the largest sizes an
option or a model file may ask for, and glibc keeping what the process frees. Needs no torch, so
that commands which never run a network start quickly."""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
# The largest sizes an option or a model file may ask for: beyond them a run only exhausts memory
# (an input of 100,000 px asked for 30 GB before the first image).
MAX_INPUT_SIZE, MAX_BITS, MAX_WIDTH, MAX_BATCH, MAX_EPOCHS, MAX_SIDE = 2048, 4096, 65536, 65536, 100_000, 16384
# Peak memory of a forward pass per byte of its input batch (MobileNetV2 at 224 px, batch 32, on the CPU:
# 390 MB for 18 MB of input; a training step, forward and backward, 2.0 GB).
ACTIVATION_BYTES = {"inference": 24, "training": 128}


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


def check_batch_memory(images: int, image_size: int, step: str, option: str) -> None:
    """A UserError, before anything is allocated, when ``images`` images of ``image_size`` px in one
    ``step`` ("inference" or "training") would need more memory than is available."""
    needed, available = images * 3 * image_size**2 * 4 * ACTIVATION_BYTES[step], available_memory()
    if available is not None and needed > available:
        from .errors import UserError

        raise UserError(f"a batch of {images} images at {image_size} px needs about {needed / 2**30:.1f} GiB, "
                        f"more than the {available / 2**30:.1f} GiB available; lower {option}")
