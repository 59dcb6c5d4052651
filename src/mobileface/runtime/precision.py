"""fp32 or int8 for the default model, picked per machine at run time.

The bundled int8 weights (``NAME_int8`` beside the default ``NAME``) are not faster everywhere:
ONNX Runtime's int8 convolutions beat its fp32 ones only on CPUs with int8 dot-product
instructions. With AVX-512 VNNI (Zen 5) the int8 model ran 1.83x as fast as fp32; on an
AVX2-only EPYC 0.87x as fast, that is slower. So ``auto`` picks int8 where the CPU has VNNI
(AVX-512 or AVX) or AMX-INT8, and only if the int8 model's LFW View 2 accuracy, as its model
card records it, is at most :data:`MAX_INT8_LOSS_POINTS` below the fp32 model's; fp32
everywhere else (ARM CPUs included: unmeasured, so not assumed faster). ``MOBILEFACE_PRECISION``
(``fp32``, ``int8`` or ``auto``) or a command's ``--precision`` overrides the pick; a model named
explicitly (``--model``) is never swapped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from mobileface.errors import ModelFileError, UsageError

PRECISION_ENV = "MOBILEFACE_PRECISION"
PRECISIONS = ("auto", "fp32", "int8")
INT8_CPU_FLAGS = ("avx512_vnni", "amx_int8", "avx_vnni")
"""CPU features (``/proc/cpuinfo`` names) under which int8 runs faster than fp32."""
MAX_INT8_LOSS_POINTS = 0.3
"""Most LFW View 2 accuracy (percentage points) ``auto`` gives up for int8's speed."""
INT8_SUFFIX = "_int8"


@dataclass(frozen=True)
class PrecisionChoice:
    """Which bundled weights run, and why.

    ``source`` is who decided: ``auto`` (CPU features and model cards), ``env``
    (``MOBILEFACE_PRECISION``) or ``flag`` (``--precision``).
    """

    precision: str
    model: str
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``); empty where unreadable."""
    return _cpu_flags()


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def decide_precision(
    requested: str | None,
    flags: Iterable[str],
    int8_loss_points: float | None,
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[str, str, str]:
    """``(precision, source, reason)``: the pure decision, for given CPU ``flags``.

    ``requested`` is the command line's choice (``None``: not given), ``env`` the environment
    (default ``os.environ``), ``int8_loss_points`` the int8 model's LFW accuracy below fp32's
    (``None``: no int8 model, or no accuracy recorded). Raises
    :class:`~mobileface.errors.UsageError` (a ``ValueError``) for an unknown precision.
    """
    env = os.environ if env is None else env
    source = "flag"
    choice = requested
    if choice is None:
        choice, source = (env.get(PRECISION_ENV) or "auto").strip().lower(), "env"
        if choice == "auto":
            source = "auto"
    if choice not in PRECISIONS:
        where = "--precision" if source == "flag" else PRECISION_ENV
        raise UsageError(f"{where} must be one of {', '.join(PRECISIONS)}, got {choice!r}")
    if choice != "auto":
        where = "--precision" if source == "flag" else PRECISION_ENV
        return choice, source, f"{where}={choice}"
    have = [f for f in INT8_CPU_FLAGS if f in set(flags)]
    if not have:
        return "fp32", "auto", "CPU has no VNNI/AMX-INT8: int8 would not be faster"
    if int8_loss_points is None:
        return "fp32", "auto", f"CPU has {have[0]}, but no int8 weights with a measured accuracy"
    loss = f"int8 LFW View 2 accuracy {int8_loss_points:.2f} points below fp32"
    if int8_loss_points > MAX_INT8_LOSS_POINTS:
        return "fp32", "auto", f"CPU has {have[0]}, but {loss} (> {MAX_INT8_LOSS_POINTS})"
    return "int8", "auto", f"CPU has {have[0]}; {loss} (<= {MAX_INT8_LOSS_POINTS})"


def int8_loss_points(fp32_card: Mapping[str, Any], int8_card: Mapping[str, Any]) -> float | None:
    """LFW View 2 accuracy of ``int8_card``'s model below ``fp32_card``'s, in points."""
    try:
        fp32 = float(fp32_card["results"]["lfw_view2"]["accuracy"])
        int8 = float(int8_card["results"]["lfw_view2"]["accuracy"])
    except (KeyError, TypeError, ValueError):
        return None
    return 100.0 * (fp32 - int8)


def choose_precision(
    requested: str | None = None,
    *,
    flags: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> PrecisionChoice:
    """The bundled weights the default model runs as on this machine (see the module doc).

    Raises :class:`ModelFileError` when nothing is bundled, or int8 is asked for and no int8
    weights are; :class:`~mobileface.errors.UsageError` for an unknown precision.
    """
    from mobileface import weights

    default = weights.default_weights_name()
    if default is None:
        raise ModelFileError(f"no --model given and {weights.NO_WEIGHTS_HINT}")
    int8_name = default + INT8_SUFFIX
    loss = None
    if weights.is_bundled(int8_name):
        loss = int8_loss_points(
            weights.load_model_card(default), weights.load_model_card(int8_name)
        )
    precision, source, reason = decide_precision(
        requested, cpu_flags() if flags is None else flags, loss, env=env
    )
    if precision == "int8" and not weights.is_bundled(int8_name):
        raise ModelFileError(f"int8 asked for ({reason}), but no {int8_name} weights are bundled")
    name = int8_name if precision == "int8" else default
    return PrecisionChoice(precision, name, source, reason)
