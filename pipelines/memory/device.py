"""Facts about the machine the planner plans for: GPU memory, host RAM, link speeds.

``DeviceFacts.detect()`` reads the real machine (``torch.cuda.mem_get_info`` and psutil);
tests and the ``plan`` command build facts by hand (``DeviceFacts.gpu(...)``) so that every
planner decision can be checked on a CPU-only box.

Throughput and bandwidth numbers are *assumptions* the planner uses to predict speed, not
measurements, unless ``detect(probe_bandwidth=True)`` measured the host-to-device link and the
host's pageable->pinned copy speed (both cached per process).
They are printed with every plan so that a user can see (and override) what the
prediction rests on.
"""
from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field, replace
from typing import Any

GB = 1e9
GiB = 2**30

# Dense bf16/fp16 tensor-core throughput with fp32 accumulation, in TFLOPS, from the vendors'
# spec sheets (no sparsity). Matched by substring of the device name, first match wins, so the
# longer names come first. Only the ratio of compute to transfer time matters for choosing a
# plan; the absolute number only scales the predicted seconds.
_GPU_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A6000", 155.0),
    ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("T4", 65.0),
    ("RTX 5090", 209.5), ("RTX 5080", 112.6), ("RTX 5070 Ti", 87.9), ("RTX 5070", 61.7),
    ("RTX 4090", 165.2), ("RTX 4080", 97.5), ("RTX 4070 Ti", 80.2), ("RTX 4070", 58.3),
    ("RTX 4060 Ti", 44.1), ("RTX 4060", 30.2),
    ("RTX 3090", 71.0), ("RTX 3080", 59.5), ("RTX 3070", 40.6), ("RTX 3060", 25.6),
    ("RTX 2080 Ti", 53.8), ("RTX 2080", 40.3), ("RTX 2070", 29.9), ("RTX 2060", 25.8),
)
_DEFAULT_GPU_TFLOPS = 100.0

# Pinned host->device copy speed (GB/s). PCIe 4.0 x16 moves ~25 GB/s in practice; 20 is a
# conservative default. Data-centre Hopper/Blackwell hosts use PCIe 5.0 (~50 GB/s).
_FAST_LINK_GPUS = ("H100", "H200", "GH200", "B200", "RTX 50")


@dataclass(frozen=True)
class DeviceFacts:
    """What the planner knows about the machine. All sizes in bytes, speeds in GB/s or TFLOPS."""

    has_cuda: bool
    name: str
    total_vram: int
    free_vram: int
    total_ram: int
    free_ram: int
    compute_capability: tuple[int, int] | None = None
    gpu_tflops: float = _DEFAULT_GPU_TFLOPS  # dense bf16 tensor throughput (spec sheet)
    h2d_pinned_gbps: float = 20.0  # host->device from pinned memory (overlaps compute on a stream)
    h2d_pageable_gbps: float = 8.0  # host->device from ordinary memory (synchronous)
    d2h_gbps: float = 8.0  # device->host into ordinary memory (group offload without streams copies back)
    host_copy_gbps: float = 10.0  # pinning a tensor = one host memcpy into page-locked memory
    disk_gbps: float = 2.0  # NVMe read speed for disk offload
    cpu_tflops: float = 0.3  # bf16 matmul on the CPU (text encoder on CPU)
    attention_backends: tuple[str, ...] = ()  # optional fast kernels found besides torch SDPA
    inside_comfyui: bool = False
    bandwidth_measured: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    # ---------------------------------------------------------------- construction
    @classmethod
    def detect(cls, probe_bandwidth: bool = False) -> DeviceFacts:
        """Read the real machine. Without CUDA the GPU fields are zero and ``has_cuda`` is False."""
        import psutil

        vm = psutil.virtual_memory()
        base: dict[str, Any] = dict(total_ram=int(vm.total), free_ram=int(vm.available),
                                    inside_comfyui=_inside_comfyui())
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:  # planning must work without torch; then there is no CUDA either
            cuda = False
        if not cuda:
            return cls(has_cuda=False, name="cpu", total_vram=0, free_vram=0, **base)
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        cc = torch.cuda.get_device_capability(index)
        facts = cls(has_cuda=True, name=name, total_vram=int(total), free_vram=int(free),
                    compute_capability=(int(cc[0]), int(cc[1])), attention_backends=_attention_backends(cc),
                    **_speed_defaults(name), **base)
        if probe_bandwidth:
            speeds = {**measure_link_speeds(), **measure_host_copy_speed()}
            facts = replace(facts, **{k: v for k, v in speeds.items() if k in _SPEED_FIELDS},
                            bandwidth_measured=True,
                            notes=facts.notes + (f"measured: pinning {speeds['pin_gbps']} GB/s",))
        return facts

    @classmethod
    def gpu(cls, vram_gb: float, ram_gb: float, name: str = "", free_vram_gb: float | None = None,
            free_ram_gb: float | None = None, **overrides: Any) -> DeviceFacts:
        """Facts for a GPU given by its size (GB = 1e9 bytes): for tests and for planning ahead."""
        name = name or f"hypothetical {vram_gb:g} GB GPU"
        fields: dict[str, Any] = dict(
            has_cuda=True, name=name, total_vram=int(vram_gb * GB),
            free_vram=int((vram_gb if free_vram_gb is None else free_vram_gb) * GB),
            total_ram=int(ram_gb * GB), free_ram=int((ram_gb if free_ram_gb is None else free_ram_gb) * GB),
            compute_capability=(8, 9), **_speed_defaults(name))
        fields.update(overrides)
        return cls(**fields)

    # ---------------------------------------------------------------- use
    @property
    def execution_device(self) -> str:
        return "cuda" if self.has_cuda else "cpu"

    @property
    def bf16_supported(self) -> bool:
        return self.compute_capability is None or self.compute_capability >= (8, 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        data["attention_backends"] = list(self.attention_backends)
        data["notes"] = list(self.notes)
        return data

    def describe(self) -> str:
        if not self.has_cuda:
            return f"no CUDA GPU; host RAM {self.free_ram / GB:.1f} of {self.total_ram / GB:.1f} GB free"
        return (f"{self.name}: {self.free_vram / GB:.1f} of {self.total_vram / GB:.1f} GB VRAM free; "
                f"host RAM {self.free_ram / GB:.1f} of {self.total_ram / GB:.1f} GB free")


def _speed_defaults(name: str) -> dict[str, Any]:
    tflops = next((t for key, t in _GPU_TFLOPS if key.lower() in name.lower()), _DEFAULT_GPU_TFLOPS)
    fast_link = any(key.lower() in name.lower() for key in _FAST_LINK_GPUS)
    return {"gpu_tflops": tflops, "h2d_pinned_gbps": 45.0 if fast_link else 20.0,
            "h2d_pageable_gbps": 12.0 if fast_link else 8.0, "d2h_gbps": 12.0 if fast_link else 8.0}


def _attention_backends(cc: tuple[int, int]) -> tuple[str, ...]:
    """Exact (lossless) attention kernels importable here, best first. Sage is lossy: not auto-picked."""
    found = []
    if cc[0] == 9 and importlib.util.find_spec("flash_attn_interface") is not None:
        found.append("_flash_3")  # FlashAttention 3, Hopper only
    if cc >= (8, 0) and importlib.util.find_spec("flash_attn") is not None:
        found.append("flash")
    return tuple(found)


def _inside_comfyui() -> bool:
    import sys

    return "comfy.model_management" in sys.modules


_SPEED_FIELDS = ("h2d_pinned_gbps", "h2d_pageable_gbps", "d2h_gbps", "host_copy_gbps")
_MEASURED: dict[str, dict[str, float]] = {}  # per process: the machine does not change under a job


def measure_link_speeds(megabytes: int = 256, repeats: int = 3) -> dict[str, float]:
    """Time pinned and pageable host->device copies on the current CUDA device (GB/s); measured once
    per process and cached."""
    if "link" not in _MEASURED:
        _MEASURED["link"] = _measure_link_speeds(megabytes, repeats)
    return dict(_MEASURED["link"])


def measure_host_copy_speed(megabytes: int = 256, repeats: int = 3) -> dict[str, float]:
    """What pinning costs on this machine (GB/s), measured once per process and cached:

    * ``host_copy_gbps``: a pageable -> pinned host copy (what group offload with ``low_cpu_mem_usage``
      does for every block before its host->device copy; the planner assumed 10 GB/s);
    * ``pin_gbps``: allocating page-locked memory and filling it (``tensor.pin_memory()``), what
      pre-pinned offload pays once per weight.

    Without CUDA there is no page-locked memory to measure: an empty dict."""
    if "host" not in _MEASURED:
        _MEASURED["host"] = _measure_host_copy_speed(megabytes, repeats)
    return dict(_MEASURED["host"])


def _measure_host_copy_speed(megabytes: int, repeats: int) -> dict[str, float]:
    import time

    import torch

    if not torch.cuda.is_available():
        return {}
    n = megabytes * 2**20
    source = torch.ones(n, dtype=torch.uint8)
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    pinned.copy_(source)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        pinned.copy_(source)
    copy_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        fresh = source.pin_memory()
        del fresh
    pin_s = time.perf_counter() - start
    del source, pinned
    return {"host_copy_gbps": round(n * repeats / copy_s / GB, 1), "pin_gbps": round(n * repeats / pin_s / GB, 1)}


def _measure_link_speeds(megabytes: int, repeats: int) -> dict[str, float]:
    import time

    import torch

    n = megabytes * 2**20
    device = torch.device("cuda")
    target = torch.empty(n, dtype=torch.uint8, device=device)
    results = {}
    for key, pinned in (("h2d_pinned_gbps", True), ("h2d_pageable_gbps", False)):
        source = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
        target.copy_(source, non_blocking=pinned)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            target.copy_(source, non_blocking=pinned)
        torch.cuda.synchronize()
        results[key] = round(n * repeats / (time.perf_counter() - start) / GB, 1)
    back = torch.empty(n, dtype=torch.uint8)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        back.copy_(target)
    torch.cuda.synchronize()
    results["d2h_gbps"] = round(n * repeats / (time.perf_counter() - start) / GB, 1)
    del target, source, back
    torch.cuda.empty_cache()
    return results


def comfy_free_memory(nbytes: int) -> bool:
    """Inside ComfyUI, ask its model manager to free ``nbytes`` of GPU memory (unloading its own
    least-recently-used models) and empty the allocator cache. Outside ComfyUI: nothing.

    ``comfy.model_management`` is only used when ComfyUI already imported it: importing it
    ourselves would start ComfyUI's own device setup and argument parsing.
    """
    import sys

    mm = sys.modules.get("comfy.model_management")
    if mm is None:
        return False
    try:
        if nbytes > 0:
            mm.free_memory(int(nbytes), mm.get_torch_device())
        mm.soft_empty_cache()
        return True
    except Exception:  # ComfyUI's API moved or there is no GPU: we still budget on our own
        return False
