"""Write a benchmark's figures into benchmarks/RESULTS.md, in its own marked section."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = "none"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            gpu = out.stdout.strip().replace("\n", ", ")
    except (OSError, subprocess.SubprocessError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, GPU: {gpu}"


CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_features() -> str:
    """The vector extensions FAISS, torch and ONNX Runtime can use, each yes or no (a
    speed-up that needs AVX-512, bf16 or AMX says so; the float32 path is what AVX2 gets)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return "unknown"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FEATURES)


def this_command() -> str:
    """How this benchmark was started: `python benchmarks/NAME.py ARGS`, for its section."""
    return " ".join([f"python benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def update_section(name: str, title: str, command: str, body: str) -> None:
    """Replace (or append) the section `name` with fresh figures."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    section = (
        f"<!-- {name}:start -->\n## {title}\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}  \n"
        f"Command: `{command}`\n\n{body.rstrip()}\n<!-- {name}:end -->\n"
    )
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section)
    RESULTS.write_text(text)
