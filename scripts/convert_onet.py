"""Convert MTCNN's ONet (facenet-pytorch's MIT-licensed weights) to the ONNX file the package
ships as ``src/mobileface/assets/onet.onnx``: run once, offline, with PyTorch.

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fnp     # the wheel only
    .venv/bin/python scripts/convert_onet.py /tmp/fnp/facenet_pytorch-2.6.0-py3-none-any.whl

The weights are read from the wheel (``facenet_pytorch/data/onet.pt``, a state dict); the
wheel itself is never installed (it would pull a CUDA PyTorch and torchvision). The network
below is facenet-pytorch's ``ONet`` (``models/mtcnn.py``), layer for layer. Input: ``N x 3 x
48 x 48`` RGB, ``(x - 127.5) * 0.0078125``, rows then columns (facenet-pytorch transposed the
original Caffe/TensorFlow kernels so that the usual ``H x W`` order is right). Outputs:
``box`` (N x 4, box edge offsets in box widths), ``points`` (N x 10: five x fractions of the
box, then five y fractions) and ``prob`` (N x 2, softmax; column 1 is "face").

The PReLUs are rewritten as exact Conv/Relu/Add forms (ONNX Runtime's ``PRelu`` kernel is
slow; see :mod:`mobileface.export.graph`). The export is checked against facenet-pytorch's
forward (``nn.PReLU``) on random inputs, its latency is printed beside the plain export's, and
the SHA-256 of the wheel, of ``onet.pt`` and of the ONNX file are printed;
``assets/MTCNN_LICENSE`` records them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEMBER = "facenet_pytorch/data/onet.pt"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
"""facenet_pytorch-2.6.0-py3-none-any.whl as PyPI serves it (pip checks it on download)."""
OPSET = 17


def build_onet():
    """facenet-pytorch's ONet, without its file loading."""
    import torch
    from torch import nn

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x, reference: bool = False):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()  # the TensorFlow port's flatten order
            x = self.dense5(x.reshape(x.shape[0], -1))
            # the same function as facenet-pytorch's PReLU, written with Relu (see export)
            relu_form = torch.relu(x) - self.prelu5.weight * torch.relu(-x)
            x = self.prelu5(x) if reference else relu_form
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return ONet().eval()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_weights(source: Path) -> tuple[bytes, str]:
    """``onet.pt``'s bytes from the wheel (checked against PyPI's digest) or a loose file."""
    data = source.read_bytes()
    if source.suffix == ".whl":
        if sha256(data) != WHEEL_SHA256:
            raise SystemExit(f"{source}: SHA-256 {sha256(data)} is not facenet-pytorch 2.6.0's")
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(MEMBER), f"{source.name} ({sha256(data)}), {MEMBER}"
    return data, source.name


def export(weights: bytes, out: Path) -> bytes:
    """The ONNX file's bytes, after parity checks against facenet-pytorch's forward."""
    import onnx
    import torch

    from mobileface.export.graph import decompose_prelu

    net = build_onet()
    net.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    for p in net.parameters():
        p.requires_grad_(False)
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 48, 48),),
        buffer,
        input_names=["input"],
        output_names=["box", "points", "prob"],
        dynamic_axes={k: {0: "batch"} for k in ("input", "box", "points", "prob")},
        opset_version=OPSET,
        dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    plain = model.SerializeToString()
    # ONNX Runtime's PRelu kernel is slow (mobileface.export.graph): the convolutions' PReLUs
    # become exact Conv/Relu/Add forms (the dense layer's is written with Relu in forward).
    print(f"PReLU rewritten: {dict(decompose_prelu(model, 'fp32'))}")
    model.producer_name = "mobileface scripts/convert_onet.py"
    model.doc_string = (
        "MTCNN ONet (Zhang et al. 2016), weights from facenet-pytorch 2.6.0 (MIT). Input N x 3 "
        "x 48 x 48 RGB, (x - 127.5) * 0.0078125. Outputs box (N x 4), points (N x 10: x1..x5, "
        "y1..y5 as fractions of the input box), prob (N x 2)."
    )
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 3, 48, 48)).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in net(torch.from_numpy(x), reference=True)]
    for name, a, b in zip(("box", "points", "prob"), want, _run(data, x), strict=True):
        scale = float(np.abs(a).max())
        diff = float(np.abs(a - b).max())
        print(f"parity {name}: max |onnx - torch| = {diff:.2e} (max |torch| = {scale:.2f})")
        if diff > 1e-4 * max(scale, 1.0):
            raise SystemExit(f"{name}: ONNX and PyTorch disagree by {diff:.2e}")
    for label, graph in (("PRelu ops", plain), ("rewritten", data)):
        print(f"ONNX Runtime, 1 thread, batch 2: {label} {_latency(graph, x[:2]):.3f} ms")
    out.write_bytes(data)
    return data


def _session(data: bytes):
    import onnxruntime as ort

    from mobileface.runtime.embedder import session_options

    return ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])


def _run(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    return _session(data).run(None, {"input": x})


def _latency(data: bytes, x: np.ndarray, repeats: int = 300) -> float:
    """Median milliseconds per call (CPU time: steadier on a shared machine)."""
    import time

    session = _session(data)
    for _ in range(20):
        session.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        start = time.process_time()
        session.run(None, {"input": x})
        times.append(time.process_time() - start)
    return 1000 * float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="facenet-pytorch 2.6.0 wheel, or onet.pt")
    parser.add_argument("--out", type=Path, default=ROOT / "src/mobileface/assets/onet.onnx")
    args = parser.parse_args()
    if not args.source.is_file():
        print(f"{args.source}: no such file", file=sys.stderr)
        return 1
    weights, origin = read_weights(args.source)
    data = export(weights, args.out)
    print(f"source: {origin}")
    print(f"onet.pt SHA-256: {sha256(weights)}")
    print(f"{args.out}: {len(data):,} bytes, SHA-256 {sha256(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
