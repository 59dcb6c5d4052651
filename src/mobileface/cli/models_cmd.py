"""``mobileface models``: the model zoo with measured parameters, multiply-adds and size."""

from __future__ import annotations

import argparse
import json

from mobileface.cli._format import format_table
from mobileface.errors import require_torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model zoo with measured figures",
        description=(
            "List the registered architectures with input size, embedding size, parameters "
            "(before and after batch-norm folding), multiply-adds and fp32 size, all measured "
            "from the code."
        ),
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    require_torch("mobileface models")
    from mobileface.models import model_cards

    cards = model_cards(args.pattern)
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    headers = ["model", "input", "dim", "params", "params (BN folded)", "MAdds", "fp32 MB"]
    rows = [
        [
            c.name,
            "x".join(map(str, c.input_size)),
            c.embedding_size,
            c.params,
            c.params_folded,
            c.madds,
            c.fp32_mb,
        ]
        for c in cards
    ]
    print(format_table(headers, rows))
    return 0
