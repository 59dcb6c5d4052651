"""Every registered model through the same checks (timm style), plus the papers' figures."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mobileface.models import (
    count_madds,
    count_parameters,
    create_model,
    fold_batchnorm,
    list_models,
    model_card,
    model_spec,
)
from mobileface.models.blocks import ChannelShuffle
from models_helpers import randomize_and_calibrate
from suite_rules import large_architectures

ALL_MODELS = list_models()

# Exact figures of our implementations (params, params with BN folded, multiply-adds).
# A change to any architecture must show up here.
MEASURED = {
    "mobilefacenet": (1_003_136, 993_344, 220_965_376),
    "mobilefacenet_112x96": (999_552, 989_760, 189_408_256),
    "mobilefacenet_96x96": (996_480, 986_688, 162_359_296),
    "mobilefacenet_m": (937_344, 927_680, 220_899_840),
    "mobilefacenet_s": (850_688, 841_920, 217_669_760),
    "mobilefacenet_relu": (995_584, 985_792, 220_965_376),
    "mobilefacenet_prelu_shared": (995_617, 985_825, 220_965_376),
    "mobilenetv2": (2_042_368, 2_025_952, 287_517_568),
    "mobilenetv2_gdconv": (2_068_480, 2_051_552, 287_542_656),
    "seesaw_shufflefacenet": (1_370_176, 1_360_000, 145_762_816),
    "seesaw_sharefacenet": (1_370_176, 1_360_000, 145_762_816),
    "dw_seesawfacenet_v1": (4_246_944, 4_222_368, 526_478_592),
    "dw_seesawfacenet_v2": (4_246_944, 4_222_368, 526_478_592),
    "squeezefaceposenet": (1_235_496, 1_235_496, 730_951_360),
    "squeezefaceposenet_dw": (694_056, 694_056, 267_174_592),
}

EMBEDDING_SIZE = {
    "mobilefacenet_m": 512,
    "seesaw_shufflefacenet": 512,
    "seesaw_sharefacenet": 512,
    "dw_seesawfacenet_v1": 512,
    "dw_seesawfacenet_v2": 512,
    "squeezefaceposenet": 1000,
    "squeezefaceposenet_dw": 1000,
}


# Reduced inputs for the checks whose meaning does not depend on the input size (folding,
# determinism, gradients, export parity): about 3/7 of each side, so every stage and a GDConv
# kernel larger than 1x1 (non-square for 112x96) remain, at a fifth of the cost or less.
# Figures from the papers (parameters, multiply-adds) are measured at the registered sizes.
SMALL_INPUT = {(112, 112): (48, 48), (112, 96): (48, 32), (96, 96): (32, 32), (113, 113): (49, 49)}


def small_size(name: str) -> tuple[int, int]:
    return SMALL_INPUT[model_spec(name).input_size]


def small_id(name: str) -> str:
    """Reduced-input tests say so in their ids: ``mobilefacenet@48x48``."""
    return "{}@{}x{}".format(name, *small_size(name))


def small_model(name: str) -> nn.Module:
    """``name`` built for its reduced input size (same layers, smaller feature maps)."""
    return create_model(name, input_size=small_size(name))


cached_card = functools.cache(model_card)
"""Each model's card measured once per session (several tests read the same figures)."""


def images(batch: int, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
    """Normalised face-like inputs in [-1, 1], as the models see after preprocessing."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=gen) * 2 - 1


def within(value: float, target: float, tolerance: float = 0.005) -> bool:
    return abs(value - target) <= tolerance * target


def truncated(value: int, unit: float, decimals: int) -> float:
    """A count as papers print it: in ``unit`` and cut (not rounded) to ``decimals``."""
    return math.floor(value / unit * 10**decimals) / 10**decimals


SLOW_IF_LARGE = [
    pytest.param(n, marks=pytest.mark.slow) if n in large_architectures() else n for n in ALL_MODELS
]


@pytest.fixture(params=SLOW_IF_LARGE)
def arch(request: pytest.FixtureRequest) -> str:
    """Each registered architecture, for tests that build it at its full input size (the
    large ones are slow: a collection rule checks, see test_suite_hygiene)."""
    return request.param


@pytest.fixture(scope="module", params=ALL_MODELS, ids=small_id)
def calibrated(request: pytest.FixtureRequest) -> nn.Module:
    """Each architecture at its reduced input size, with realistic BN statistics."""
    torch.manual_seed(0)
    return randomize_and_calibrate(small_model(request.param))


def test_registry_lists_every_architecture_of_the_spec() -> None:
    assert set(ALL_MODELS) == set(MEASURED)


def test_unknown_model_error_suggests_near_names() -> None:
    with pytest.raises(KeyError, match="did you mean mobilefacenet"):
        create_model("mobilefacenett")


def test_list_models_filters_by_pattern() -> None:
    assert list_models("mobilenetv2*") == ["mobilenetv2", "mobilenetv2_gdconv"]


def test_output_shape_and_embedding_size(arch: str) -> None:
    model = create_model(arch).eval()
    x = torch.randn(3, 3, *model.input_size)
    with torch.no_grad():
        y = model(x)
    expected = EMBEDDING_SIZE.get(arch, 128)
    assert y.shape == (3, expected)
    assert model.embedding_size == expected


@pytest.mark.parametrize("name", ALL_MODELS, ids=small_id)
def test_gradients_are_finite_and_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = small_model(name).train()
    x = torch.randn(4, 3, *model.input_size)
    model(x).pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_eval_is_deterministic(calibrated: nn.Module) -> None:
    x = images(2, calibrated.input_size)
    with torch.no_grad():
        assert torch.equal(calibrated(x), calibrated(x))


def test_counts_match_recorded_figures(arch: str) -> None:
    model = create_model(arch)
    params, folded, madds = MEASURED[arch]
    assert count_parameters(model) == params
    assert count_parameters(fold_batchnorm(model)) == folded
    assert count_madds(model) == madds


def test_mobilefacenet_matches_the_paper_exactly() -> None:
    card = cached_card("mobilefacenet")
    assert card.params == 1_003_136
    assert card.params_folded == 993_344  # the paper's 0.99M
    assert card.madds == 220_965_376  # the paper's 221M
    assert card.embedding_size == 128
    assert round(card.fp32_mb, 1) == 4.0  # the paper's 4.0MB


@pytest.mark.parametrize(
    ("name", "paper_millions"),
    [("mobilefacenet", 0.99), ("mobilefacenet_m", 0.92), ("mobilefacenet_s", 0.84)],
)
def test_mobilefacenet_variants_match_the_papers_table(name: str, paper_millions: float) -> None:
    # The paper prints folded parameter counts in millions, cut to two decimals.
    assert truncated(cached_card(name).params_folded, 1e6, 2) == paper_millions


@pytest.mark.parametrize(
    ("name", "kernel"), [("mobilefacenet_112x96", (7, 6)), ("mobilefacenet_96x96", (6, 6))]
)
def test_gdconv_kernel_follows_the_feature_map(name: str, kernel: tuple[int, int]) -> None:
    model = create_model(name)
    gdconv = model.head[1].conv
    assert gdconv.kernel_size == kernel
    assert gdconv.groups == gdconv.in_channels == 512


def test_mobilefacenet_relu_has_no_prelu() -> None:
    model = create_model("mobilefacenet_relu")
    assert not any(isinstance(m, nn.PReLU) for m in model.modules())
    prelu_params = sum(
        p.numel()
        for m in create_model("mobilefacenet").modules()
        if isinstance(m, nn.PReLU)
        for p in m.parameters()
    )
    assert count_parameters(model) == 1_003_136 - prelu_params


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv2_gdconv"])
def test_mobilenetv2_baselines_are_about_the_papers_size(name: str) -> None:
    card = cached_card(name)
    assert abs(card.params - 2.1e6) / 2.1e6 < 0.03
    assert card.input_size == (112, 112)
    stem = create_model(name).stem.conv
    assert stem.stride == (1, 1)


@pytest.mark.parametrize("name", ["seesaw_shufflefacenet", "seesaw_sharefacenet"])
def test_seesawfacenet_matches_the_paper(name: str) -> None:
    card = cached_card(name)
    assert within(card.params, 1.37e6)
    assert within(card.madds, 145.8e6)
    assert card.embedding_size == 512


@pytest.mark.parametrize("name", ["dw_seesawfacenet_v1", "dw_seesawfacenet_v2"])
def test_dw_seesawfacenet_matches_the_paper(name: str) -> None:
    card = cached_card(name)
    assert within(card.madds, 526e6)
    assert truncated(card.params_folded, 1e6, 1) == 4.2
    # Only the stride-2 blocks carry a projection shortcut: none is built and left unused.
    shortcuts = [
        m for m in create_model(name).modules() if getattr(m, "shortcut", None) is not None
    ]
    assert len(shortcuts) == 3


def test_squeezefaceposenet_matches_the_paper() -> None:
    assert within(cached_card("squeezefaceposenet").params, 1.24e6)
    assert cached_card("squeezefaceposenet_dw").params == 694_056
    model = create_model("squeezefaceposenet")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_seesaw_share_variant_offsets_the_projection_split_instead_of_shuffling() -> None:
    shuffle = create_model("seesaw_shufflefacenet").stages[0]
    share = create_model("seesaw_sharefacenet").stages[0]
    # 64 -> 128 expanded -> 64: the shuffle variant projects 32 -> 16 and 96 -> 48 channels
    # after shuffling; the share variant projects 96 -> 48 and 32 -> 16 without shuffling.
    assert isinstance(shuffle.mix, ChannelShuffle) and isinstance(share.mix, nn.Identity)
    assert shuffle.project.first.conv.weight.shape[:2] == (16, 32)
    assert share.project.first.conv.weight.shape[:2] == (48, 96)
    assert (
        shuffle.expand.first.conv.weight.shape[:2]
        == share.expand.first.conv.weight.shape[:2]
        == (32, 16)
    )


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_batchnorm_folding_is_equivalent(calibrated: nn.Module) -> None:
    # In float64 the comparison tests the folding itself, free of fp32 rounding noise.
    model = copy.deepcopy(calibrated).double()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = images(4, calibrated.input_size).double()
    with torch.no_grad():
        reference, result = model(x), folded(x)
    assert reference.abs().max() > 1e-1, "outputs too small for the comparison to mean anything"
    torch.testing.assert_close(result, reference, atol=1e-5, rtol=0)


def test_batchnorm_folding_in_float32_stays_within_rounding(calibrated: nn.Module) -> None:
    x = images(4, calibrated.input_size)
    with torch.no_grad():
        reference, result = calibrated(x), fold_batchnorm(calibrated)(x)
    assert (result - reference).abs().max() / reference.abs().max() < 1e-4


def test_folding_leaves_the_original_untouched() -> None:
    model = create_model("mobilefacenet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_onnx_export_agrees_with_pytorch(calibrated: nn.Module, tmp_path) -> None:
    import onnxruntime as ort

    from mobileface.export import export_onnx

    path = export_onnx(calibrated, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    deployed = fold_batchnorm(calibrated)  # what the file holds
    for batch in (1, 3):  # the batch axis is dynamic
        x = images(batch, calibrated.input_size, seed=batch)
        (result,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            reference = deployed(x).numpy()
        assert result.shape == reference.shape
        scale = np.abs(reference).max()
        assert scale > 1e-1
        # Relative to the output's scale: fp32 sums in another order differ by about 1e-6 of
        # it; a wrong fold or export differs by its whole size.
        assert np.abs(result - reference).max() < 1e-3 * scale
