"""The bundled default weights: files, model card, runtime without torch, real decisions, demo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobileface import weights

REPO = Path(__file__).resolve().parents[1]
NAMES = ("mobilefacenet", "mobilefacenet_int8")
MAX_FP32_MB = 5.0


@pytest.fixture(scope="module")
def cards() -> dict[str, dict]:
    return {name: weights.load_model_card(name) for name in NAMES}


def test_default_weights_are_bundled() -> None:
    assert weights.default_weights_name() == "mobilefacenet"
    assert set(NAMES) <= set(weights.list_weights())


@pytest.mark.parametrize("name", NAMES)
def test_card_describes_its_file(name: str, cards: dict[str, dict]) -> None:
    card = cards[name]
    path = weights.resolve_weights(name)
    assert card["file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["file"]["size_mb"] == pytest.approx(path.stat().st_size / 2**20, abs=1e-3)
    assert card["architecture"] == "mobilefacenet_relu" and card["input_size"] == [112, 112]
    thresholds = card["thresholds"]
    assert set(thresholds) == {"far_1e-3", "far_1e-4"}
    assert 0 < thresholds["far_1e-3"] < thresholds["far_1e-4"] < 1
    assert "non-commercial" in card["licence"]
    lfw = card["results"]["lfw_view2"]
    assert lfw["pairs"] == 6000 and 0.5 < lfw["accuracy"] <= 1
    assert card["training"]["config"] == "configs/mobilefacenet_relu_openvino_stage6.yaml"
    stages = [(stage["architecture"], stage["steps"]) for stage in card["training"]["stages"]]
    assert stages == [
        ("mobilefacenet", 3200),
        ("mobilefacenet", 5200),
        ("mobilefacenet_relu", 4000),
        ("mobilefacenet_relu", 2400),
        ("mobilefacenet_relu", 1600),
        ("mobilefacenet_relu", 2000),
    ]
    # Each stage says its loss: the last two distil alone, the teacher run on each crop.
    assert card["training"]["stages"][-1]["loss"].startswith("distillation")
    assert "on each augmented crop" in card["training"]["stages"][-1]["loss"]
    # The last stage's teacher is named with its licence and its undisclosed training data.
    teacher = card["training"]["stages"][-1]["teacher"]
    assert "face-reidentification-retail-0095" in teacher and "Apache-2.0" in teacher
    assert "does not disclose" in card["licence"] and "Pins" in card["licence"]


def test_fp32_file_is_small_enough(cards: dict[str, dict]) -> None:
    assert cards["mobilefacenet"]["file"]["size_mb"] <= MAX_FP32_MB
    assert (
        cards["mobilefacenet_int8"]["file"]["size_mb"] < cards["mobilefacenet"]["file"]["size_mb"]
    )


def test_onnx_metadata_carries_the_cards_thresholds(cards: dict[str, dict]) -> None:
    """A file copied out of the package still decides at the calibrated thresholds."""
    from mobileface.runtime import OnnxEmbedder

    for name in NAMES:
        embedder = OnnxEmbedder(weights.resolve_weights(name))
        assert embedder.thresholds == pytest.approx(cards[name]["thresholds"])
        assert embedder.architecture == cards[name]["architecture"]


def test_markdown_card_is_shipped() -> None:
    text = (weights.weights_dir() / "mobilefacenet.md").read_text(encoding="utf-8")
    assert "LFW View 2" in text and "non-commercial" in text


def _pairs(data_dir: Path):
    from mobileface.data.pairs import read_pairs

    lfw = data_dir / "lfw"
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    return pairs[::1200] + pairs[300::1200]  # each fold opens with 300 same, then different


def test_bundled_model_decides_real_pairs_without_torch(data_dir: Path, tmp_path: Path) -> None:
    """Verification with the shipped weights in a process where importing torch fails."""
    listed = json.dumps([[str(p.image_a), str(p.image_b), p.same] for p in _pairs(data_dir)])
    script = f"""
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this test")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
from mobileface.runtime import FaceVerifier, open_embedder
verifier = FaceVerifier(open_embedder("mobilefacenet"), policy="central")
pairs = json.loads({json.dumps(listed)})
results = [(verifier.verify(a, b), same) for a, b, same in pairs]
out = {{"torch": "torch" in sys.modules,
        "same": [r.score for r, same in results if same],
        "different": [r.score for r, same in results if not same],
        "false_accepts": sum(r.same and not same for r, same in results)}}
print(json.dumps(out))
"""
    env = {**os.environ, "MOBILEFACE_DATA": str(data_dir)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["false_accepts"] == 0, out  # deciding at FAR 1e-3
    mean_same = sum(out["same"]) / len(out["same"])
    mean_different = sum(out["different"]) / len(out["different"])
    assert mean_same > mean_different + 0.3, out  # hard pairs exist: compare the means


@pytest.mark.slow
def test_demo_verifies_pairs_and_writes_the_benchmark_report(
    data_dir: Path, tmp_path: Path
) -> None:
    """The main job on a small LFW subset: verified pairs, a results table and the ROC plot."""
    lfw = tmp_path / "lfw"
    lfw.mkdir()
    (lfw / "images").symlink_to(data_dir / "lfw" / "images")
    lines = (data_dir / "lfw" / "pairs.txt").read_text().splitlines()[1:]
    same = [line for line in lines if len(line.split()) == 3][:20]
    different = [line for line in lines if len(line.split()) == 4][:20]
    (lfw / "pairs.txt").write_text("1\t20\n" + "\n".join(same + different) + "\n")
    out = tmp_path / "report"
    command = [sys.executable, "-m", "mobileface", "demo", "--lfw", str(lfw), "--out", str(out)]
    command += ["--cache", str(tmp_path / "cache.sqlite")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "decisions right" in text and "mobilefacenet" in text and "AUC" in text
    assert (out / "roc.png").stat().st_size > 1000
