"""The instruction-set class osnet-bench quotes results for, read from canned /proc/cpuinfo files of the ARM boxes
the runtime targets (tests/data/cpuinfo/), from arm64 capability words, and under qemu-user's x86 /proc/cpuinfo."""
from pathlib import Path

import pytest

from osnet_edge.benchmarks import probe

DATA = Path(__file__).parent / "data" / "cpuinfo"


@pytest.mark.parametrize("name, model, cls", [
    ("jetson_agx_orin.txt", "ARM Cortex-A78AE", "ARMv8.2 NEON dotprod/fp16"),
    ("raspberry_pi_5.txt", "ARM Cortex-A76 (Raspberry Pi 5 Model B Rev 1.0)", "ARMv8.2 NEON dotprod/fp16"),
])
def test_arm_boards_class_from_cpuinfo(name, model, cls):
    info = probe.parse_cpuinfo((DATA / name).read_text(), machine="aarch64")
    assert info["model"] == model
    assert info["flags_source"] == "/proc/cpuinfo"
    assert probe.isa_class(info["flags"]) == cls


@pytest.mark.parametrize("features, cls", [
    ("fp asimd evtstrm crc32 cpuid", "ARMv8.0 NEON"),                                     # Cortex-A72: Pi 4
    ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm dcpop",
     "ARMv8.2 NEON fp16"),                                                                # Carmel: Xavier
    ("fp asimd fphp asimdhp asimddp sve i8mm bf16 svebf16", "ARMv8.6 NEON dotprod/fp16/i8mm/bf16 SVE"),  # Graviton3
    ("fp asimd asimdhp asimddp sve sve2 i8mm bf16", "ARMv8.6 NEON dotprod/fp16/i8mm/bf16 SVE2"),          # Neoverse-V2
])
def test_arm_feature_levels(features, cls):
    assert probe.isa_class(features.split()) == cls


def test_x86_classes_unchanged():
    assert probe.isa_class(["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]) == "AVX-512 VNNI"
    assert probe.isa_class(["sse4_2", "avx2", "avx_vnni"]) == "AVX2 VNNI"
    assert probe.isa_class(["sse4_2"]) == "baseline x86"


def test_hwcap_words_decode_to_cpuinfo_names():
    # Cortex-A76 as qemu-user reports it: AT_HWCAP 0x119ffb, AT_HWCAP2 0
    flags = probe.hwcap_flags(0x119ffb, 0)
    assert flags == "fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp".split()
    assert probe.isa_class(flags) == "ARMv8.2 NEON dotprod/fp16"
    assert probe.hwcap_flags(1 << 1 | 1 << 20, 1 << 13 | 1 << 14) == ["asimd", "asimddp", "i8mm", "bf16"]


def test_emulated_arm_with_host_cpuinfo_is_not_called_x86():
    """qemu-user hands an arm64 program the host's x86 /proc/cpuinfo: its AVX-512 flags must not be reported
    as the ARM program's instruction set (the auxiliary vector says what the emulated CPU has)."""
    host = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: sse4_2 avx2 avx512f\n"
    info = probe.parse_cpuinfo(host, machine="aarch64")
    assert info["flags"] == [] and info["flags_source"] == "none"
    assert "emulated" in info["model"]
    x86 = probe.parse_cpuinfo(host, machine="x86_64")
    assert x86["model"] == "Intel(R) Xeon(R)" and probe.isa_class(x86["flags"]) == "AVX-512"

