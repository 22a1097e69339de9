"""scripts/llama-cmake-args: the llama.cpp build flags the README's install commands use."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama-cmake-args"
BASE = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").exists(),
    reason="the script reads /proc/cpuinfo on x86-64",
)


def run(**env: str) -> list[str]:
    out = subprocess.run(
        ["sh", str(SCRIPT)], env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return out.stdout.split()


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_flags_follow_this_cpu_and_never_ask_for_amx_or_native() -> None:
    args = run()
    assert args[:5] == BASE.split()
    assert not any("AMX" in a or a == "-DGGML_NATIVE=ON" for a in args)
    cpu = cpu_flags()
    avx512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"} <= cpu
    expected = {
        "-DGGML_AVX512=ON": avx512,
        "-DGGML_AVX512_VNNI=ON": avx512 and "avx512_vnni" in cpu,
        "-DGGML_AVX512_VBMI=ON": avx512 and "avx512vbmi" in cpu,
        "-DGGML_AVX512_BF16=ON": avx512 and "avx512_bf16" in cpu,
        "-DGGML_AVX_VNNI=ON": "avx_vnni" in cpu,
    }
    assert {flag for flag, wanted in expected.items() if wanted} == set(args[5:])


def test_avx2_only_switch_prints_the_portable_flags() -> None:
    assert run(GECKOKIT_LLAMA_AVX2_ONLY="1") == BASE.split()
