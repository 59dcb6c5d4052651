"""``mobileface train CONFIG``: train a zoo model with a margin head (alone or under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobileface.errors import require_torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description=(
            "Train a zoo model from a YAML config (see configs/). The same command runs under "
            "'torchrun --nproc_per_node N -m mobileface train ...' with DistributedDataParallel "
            "(gloo on CPU, NCCL on GPU). Checkpoints go to OUT/checkpoints; --resume continues "
            "from the latest one exactly."
        ),
    )
    parser.add_argument("config", type=Path, help="training config (YAML)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry, e.g. --set optim.lr=0.05 (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/<config name>)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in OUT"
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="checkpoint and stop at this step (continue later with --resume): "
        "for time-boxed sessions",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_torch("mobileface train")
    from mobileface.train import Trainer, load_config

    config = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / args.config.stem
    final = Trainer(config, out, resume=args.resume, stop_at_step=args.stop_at).run()
    if final is not None:  # rank 0
        print(f"model: {final}")
    return 0
