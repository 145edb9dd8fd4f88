"""int8 inference of the vision tower: its linear layers quantized by torchao, where the CPU has int8 dot products.

The tower is about 99 % of SFAR's counted FLOPs, about 94 % in its linear layers. torchao (the maintained home of
PyTorch's quantization) replaces their weights by int8 tensors: "dynamic" quantizes each activation to int8 as it
comes (per token) and multiplies int8 by int8, "weight_only" keeps the activations as they are and stores the
weights in int8. int8 by int8 products are fast only on a CPU that has int8 dot products (AVX-512 VNNI, AVX-VNNI, or
AMX-INT8 tiles); elsewhere they are emulated, many times slower than float32. So the option is offered where the CPU
has them (`cpu_features`); `require_cpu_support=False` quantizes anyway, to measure agreement on any machine.
Measured in docs/performance.md (`benchmarks/hardware_utilisation.py --only int8`). Inference only.
"""

from __future__ import annotations

import torch

from ..remote_code.cpu_kernels import cpu_features

__all__ = ["INT8_MODES", "cpu_has_int8_dot_products", "quantize_vision_tower_int8"]

INT8_MODES = ("dynamic", "weight_only")


def cpu_has_int8_dot_products(features: dict[str, bool] | None = None) -> bool:
    """Whether the CPU multiplies int8 by int8 natively: AVX-512 VNNI / AVX-VNNI or AMX-INT8 tiles."""
    features = cpu_features() if features is None else features
    return bool(features.get("vnni") or features.get("amx_int8"))


def quantize_vision_tower_int8(model: torch.nn.Module, mode: str = "dynamic", require_cpu_support: bool = True):
    """
    Quantize, in place, the linear layers of the vision tower of `model` (a SFAR or ALT model or classifier, float32)
    to int8 with torchao: `mode` "dynamic" (int8 activations and weights) or "weight_only". The rest of the model
    keeps its dtype. Returns `model`. Raises ValueError on a CPU without int8 dot products unless
    `require_cpu_support=False` (there it runs, slowly), and ImportError without torchao (`pip install torchao`).
    """
    if mode not in INT8_MODES:
        raise ValueError(f"mode must be one of {INT8_MODES}, got {mode!r}")
    if require_cpu_support and not cpu_has_int8_dot_products():
        raise ValueError(
            "this CPU has no int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX-INT8): int8 products would be emulated, "
            "slower than float32; use bfloat16 or float32, or pass require_cpu_support=False to measure anyway"
        )
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    base = getattr(model, "base_model", model)  # the classifier's base model, or the model itself
    tower = base.vision_model
    config = Int8DynamicActivationInt8WeightConfig() if mode == "dynamic" else Int8WeightOnlyConfig()
    quantize_(tower, config)  # every nn.Linear of the tower (its projections and MLPs); the patch convolution stays
    return model
