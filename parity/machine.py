"""The machine a run is on: its cores, its CPU's name and the instruction sets its kernels depend on. The bottom layer:
the schedule, the decode stream, the backends' caches and the environment record all read it."""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


def cpu_count() -> int:
    """Cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The instruction sets that choose oneDNN's, ONNX Runtime's and OpenVINO's CPU kernels. Two machines can share a
# "model name" and differ in these (two "AMD EPYC" virtual machines here: one with AVX-512 and BF16, one without), and
# with them the fastest Paddle mode that runs, the latencies and the bf16 default.
CPU_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


@functools.lru_cache(maxsize=None)
def cpu_features() -> tuple[str, ...]:
    """Which of ``CPU_FEATURES`` this CPU has (from /proc/cpuinfo's flags; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in CPU_FEATURES if f in have)
    except OSError:
        pass
    return ()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
