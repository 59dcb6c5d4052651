"""Training throughput: the mobileface engine against a plain eager PyTorch loop, same run.

    python benchmarks/bench_train.py [--batch 64 128] [--steps 30] [--json]

Both train ``mobilefacenet`` with an ArcFace head on the shared Pinterest crops
(``$MOBILEFACE_DATA/pins-112``) with SGD. The baseline is the loop most people write first:
a Dataset that decodes each JPEG with OpenCV, a DataLoader with 2 workers, NCHW float32
eager PyTorch. The engine runs ``mobileface train``'s own code path (decoded-image cache,
channels-last memory, ``torch.compile``), timed from its log after the warm-up windows.
Figures are images per second (higher is better), medians over timing windows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mobileface.data.folders import list_image_folder
from mobileface.losses import Margin, PartialFC
from mobileface.models import create_model
from mobileface.paths import data_dir
from mobileface.train import Trainer, load_config

REPO = Path(__file__).resolve().parents[1]


class PlainFolder(Dataset):
    def __init__(self, root: Path) -> None:
        items = list_image_folder(root)
        names = sorted({n for _, n in items})
        index = {n: i for i, n in enumerate(names)}
        self.items = [(str(p), index[n]) for p, n in items]
        self.num_classes = len(names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        if np.random.rand() < 0.5:
            image = image[:, ::-1]
        x = (torch.from_numpy(image.copy()).permute(2, 0, 1).float() - 127.5) / 128.0
        return x, label


def plain_loop(root: Path, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    data = PlainFolder(root)
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
    model = create_model("mobilefacenet")
    head = PartialFC(model.embedding_size, data.num_classes, Margin.preset("arcface"))
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=4e-5)
    done, start = 0, None
    while done < steps + warmup:
        for x, y in loader:
            if done == warmup:
                start = time.perf_counter()
            loss = head(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps + warmup:
                break
    return steps * batch / (time.perf_counter() - start)


def engine(batch: int, steps: int, warmup: int, compile_model: bool, out: Path) -> float:
    window = 5
    overrides = [
        f"optim.batch_size={batch}",
        f"schedule.steps={steps + warmup}",
        "schedule.warmup_steps=0",
        f"train.log_every={window}",
        f"train.checkpoint_every={steps + warmup}",
        "data.workers=2",
        f"data.cache_dir={out / 'cache'}",
        f"model.compile={str(compile_model).lower()}",
    ]
    config = load_config(REPO / "configs" / "tiny.yaml", overrides)
    Trainer(config, out / f"run-{batch}-{compile_model}").run()
    log = out / f"run-{batch}-{compile_model}" / "log.jsonl"
    rates = [json.loads(line)["images_per_second"] for line in log.read_text().splitlines()]
    return statistics.median(rates[warmup // window :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = data_dir() / "pins-112"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            baseline = plain_loop(root, batch, args.steps, args.warmup)
            eager = engine(batch, args.steps, args.warmup, False, Path(tmp))
            compiled = engine(batch, args.steps, args.warmup, True, Path(tmp))
            rows.append({"batch": batch, "plain_eager": baseline, "engine_eager": eager,
                         "engine_compiled": compiled, "speedup": compiled / baseline})  # fmt: skip
    if args.json:
        print(
            json.dumps(
                {"device": "cpu", "threads": torch.get_num_threads(), "rows": rows}, indent=2
            )
        )
        return
    print(f"mobilefacenet training, images/s on CPU ({torch.get_num_threads()} threads)")
    print("batch  plain eager  engine eager  engine compiled  speed-up")
    for r in rows:
        print(f"{r['batch']:>5}  {r['plain_eager']:>11.1f}  {r['engine_eager']:>12.1f}  "
              f"{r['engine_compiled']:>15.1f}  {r['speedup']:>7.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
