"""CPU capability: /proc/cpuinfo parsing, the kind label, one bf16 answer; FLOP counting."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend import cpu, devices
from empanada_desktop.backend.finetune import precision
from empanada_desktop.backend.flops import count_flops, gflops_per_second

_BASE = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall nx lm "
         "pni ssse3 fma cx16 sse4_1 sse4_2 popcnt aes xsave avx f16c")


def _cpuinfo(model: str, extra: str, cores: int = 2, threads_per_core: int = 1) -> str:
    blocks = []
    for index in range(cores * threads_per_core):
        blocks.append(
            f"processor\t: {index}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n"
            f"physical id\t: 0\ncore id\t\t: {index // threads_per_core}\n"
            f"flags\t\t: {_BASE} {extra}\nbogomips\t: 5192.25\n"
        )
    return "\n".join(blocks)


AVX2_ONLY = _cpuinfo("AMD EPYC 7B12", "avx2 bmi1 bmi2 sha_ni")
AVX512 = _cpuinfo("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
                  "avx2 avx512f avx512dq avx512cd avx512bw avx512vl", cores=4, threads_per_core=2)
AVX512_BF16 = _cpuinfo("AMD EPYC 9B14", "avx2 avx512f avx512bw avx512_bf16 avx512_vnni avx512vbmi")
AMX = _cpuinfo("Intel(R) Xeon(R) Platinum 8480+",
               "avx2 avx512f avx512_bf16 avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8", cores=8)
ARM = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
       "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve bf16 i8mm\nCPU implementer\t: 0x41\n")


@pytest.mark.parametrize(
    ("text", "flags", "kind", "physical", "logical"),
    [
        (AVX2_ONLY, {"avx2"}, "AVX2", 2, 2),
        (AVX512, {"avx2", "avx512f"}, "AVX-512", 4, 8),
        (AVX512_BF16, {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, "AVX-512 BF16", 2, 2),
        (AMX, {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"}, "AMX", 8, 8),
    ],
)
def test_cpuinfo_flags_and_kind(text, flags, kind, physical, logical):
    parsed = cpu.parse_cpuinfo(text)
    assert parsed.flags == frozenset(flags)
    assert parsed.physical_cores == physical and parsed.logical_cores == logical
    assert cpu.kind_of(parsed.flags) == kind
    assert parsed.model.split()[0] in ("AMD", "Intel(R)")


def test_arm_features_give_bf16_and_no_core_ids():
    parsed = cpu.parse_cpuinfo(ARM)
    assert parsed.flags == {"bf16"} and parsed.physical_cores is None and parsed.logical_cores == 1
    capability = cpu.detect_cpu(parsed, "SVE256", onednn_bf16=None, cores=(4, 4))
    assert capability.native_bf16 and capability.kind == "SVE256" and capability.physical_cores == 4


def test_without_cpuinfo_the_kind_comes_from_torch():
    mac = cpu.detect_cpu(None, "AVX512", onednn_bf16=False, cores=(8, 16))
    assert mac.kind == "AVX-512" and not mac.native_bf16 and mac.flags == frozenset()
    assert (mac.physical_cores, mac.logical_cores) == (8, 16)
    assert cpu.detect_cpu(None, "DEFAULT", onednn_bf16=None).kind == "DEFAULT"
    assert cpu.kind_of(frozenset(), "AVX2") == "AVX2"


def test_native_bf16_from_onednn_else_from_flags():
    avx512 = cpu.parse_cpuinfo(AVX512)
    bf16 = cpu.parse_cpuinfo(AVX512_BF16)
    assert cpu.detect_cpu(bf16, "AVX512", onednn_bf16=None).native_bf16
    assert not cpu.detect_cpu(avx512, "AVX512", onednn_bf16=None).native_bf16
    assert not cpu.detect_cpu(bf16, "AVX512", onednn_bf16=False).native_bf16  # oneDNN's answer wins
    line = cpu.detect_cpu(avx512, "AVX512", onednn_bf16=None, cores=(4, 8)).line()
    assert line.startswith("CPU AVX-512: Intel(R) Xeon(R) Gold 6148") and "no native bf16" in line
    assert "avx2 avx512f;" in line and "4 cores / 8 threads" in line


def test_the_two_bf16_helpers_are_one_answer_from_the_capability(monkeypatch):
    this = cpu.cpu_capability_info()
    devices.cpu_bf16_supported.cache_clear()
    try:
        assert precision.cpu_has_bf16() == devices.cpu_bf16_supported() == this.native_bf16
        for native in (False, True):
            fake = cpu.CpuCapability("x", 2, 2, frozenset(), "AVX512", native)
            monkeypatch.setattr(devices, "cpu_capability_info", lambda fake=fake: fake)
            devices.cpu_bf16_supported.cache_clear()
            assert precision.cpu_has_bf16() is devices.cpu_bf16_supported() is native
            chosen = precision.choose_precision(torch.device("cpu"))
            assert chosen.name == ("bf16" if native else "fp32")
            assert [d for d in devices.list_devices() if d.kind == "cpu"][0].bf16 is native
    finally:
        devices.cpu_bf16_supported.cache_clear()


def test_this_machine_is_described():
    this = cpu.cpu_capability_info()
    assert this.torch_capability == str(torch.backends.cpu.get_cpu_capability())
    assert this.kind and this.logical_cores and this.logical_cores >= 1
    assert set(this.to_dict()) >= {"model", "kind", "flags", "native_bf16", "torch_capability"}


def test_flop_count_of_a_tiny_conv_model_is_the_analytic_count():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise, as in the DeepLab decoder
        torch.nn.Conv2d(8, 4, 1), torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 12, 5),
    )
    x = torch.randn(2, 3, 10, 12)
    pixels = 2 * 10 * 12
    first = 2 * pixels * 3 * 8 * 9
    forward = first + 2 * pixels * (8 * 9 + 8 * 4) + 2 * 2 * (4 * 10 * 12) * 5
    assert count_flops(model, x) == forward
    assert count_flops(torch.jit.script(model), x) == forward

    def step():
        model(x).sum().backward()

    # backward: the weight gradient of every layer and the input gradient of all but the first,
    # each as much work as the layer's forward (torch's own formula counts the depthwise weight
    # gradient 8x)
    assert count_flops(step) == forward + (2 * forward - first)
    assert count_flops(model.to("meta"), x.to("meta")) == forward  # counted without computing
    assert gflops_per_second(4e9, 2.0) == 2.0


def test_avx2_cap_from_the_environment_hides_avx512_and_bf16():
    from empanada_desktop.backend.cpu import CpuCapability, apply_cap, capped_to_avx2

    assert capped_to_avx2({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert not capped_to_avx2({"ATEN_CPU_CAPABILITY": "avx2"})  # oneDNN would still use AVX-512
    assert not capped_to_avx2({})
    cpu = CpuCapability("EPYC", 2, 2, frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX2", True)
    capped = apply_cap(cpu, True)
    assert capped.kind == "AVX2" and not capped.native_bf16 and "capped" in capped.model
    assert apply_cap(cpu, False) is cpu
