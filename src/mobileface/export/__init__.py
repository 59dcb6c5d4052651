"""Export trained models for deployment: ONNX (fp32, int8), with metadata and parity checks.

``export_onnx`` and ``parity_check`` need PyTorch; ``quantize_onnx`` and the graph passes need
only ``onnx`` and ONNX Runtime.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "export_onnx": "onnx",
    "parity_check": "onnx",
    "ParityReport": "onnx",
    "read_metadata": "onnx",
    "calibrate_batchnorm": "onnx",
    "load_for_export": "onnx",
    "quantize_onnx": "quantize",
    "QuantizeReport": "quantize",
    "decompose_prelu": "graph",
    "graph_report": "graph",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
