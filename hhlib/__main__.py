"""The command line: ``python -m hhlib {train,evaluate,encode,search} ...``.

    python -m hhlib train --dataset fashion-mnist --preset cpu --bits 64 --out runs/fmnist
    python -m hhlib evaluate --checkpoint runs/fmnist/bits64/checkpoint.pt
    python -m hhlib encode --checkpoint runs/fmnist/bits64/checkpoint.pt --out runs/fmnist/db.npz
    python -m hhlib search --index runs/fmnist/db.npz --image shoe.png -k 10

Errors the user can fix (a bad flag, a missing dataset, a missing file)
print one line, without a traceback, and exit with status 2
(``HH_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PRESETS = ("cpu", "paper")


class UserError(Exception):
    """An error to report in one line, not as a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


AMP = ("auto", "bf16", "fp16", "off")
AMP_ENCODE_HELP = (
    "precision of encoding (default: auto, bf16 or fp16 on CUDA, float32 on a CPU; bf16 on a CPU "
    "with AVX-512 BF16 or AMX encoded 1.6x faster on the project's machine; fp16 needs CUDA)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hhlib", description="HybridHash deep hashing: train, evaluate, encode, search.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train one model per code length",
        description="Train HybridHash on a dataset, one model per --bits value. "
        "Writes OUT/bits{B}/checkpoint.pt (after every epoch) and OUT/bits{B}/metrics.json.",
    )
    train.add_argument("--dataset", required=True, help="a name from hhlib.data.DATASETS, e.g. fashion-mnist, cifar10")
    train.add_argument(
        "--bits",
        type=int,
        nargs="+",
        default=[64],
        metavar="B",
        help="code lengths to train, each a separate model (default: 64)",
    )
    train.add_argument(
        "--preset",
        choices=PRESETS,
        default="cpu",
        help="cpu: 0.83 M-parameter model at 32 px from scratch; paper: the paper's 224 px model "
        "and recipe from ImageNet NesT-B (default: cpu)",
    )
    train.add_argument("--epochs", type=int, help="epochs (default: the preset's, 60 for cpu, 15 for paper)")
    train.add_argument("--out", type=Path, help="output folder (default: runs/DATASET-PRESET)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/bits{B}/checkpoint.pt where one exists; finished runs are skipped",
    )
    _common(train)
    train.add_argument("--split-seed", type=int, default=0, help="seed of the query/train/database split (default: 0)")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    train.add_argument(
        "--batch-size", type=int, help="training batch size (default: the preset's, 32 for cpu, 64 for paper)"
    )
    train.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    train.add_argument("--eval-every", type=int, help="epochs between mAP evaluations (default: the preset's)")
    train.add_argument(
        "--pretrained",
        default="auto",
        metavar="auto|none|PATH",
        help="NesT-B initialisation for the paper preset: auto downloads it through timm, "
        "PATH loads a saved state_dict, none trains from scratch (default: auto; ignored by cpu)",
    )
    train.add_argument(
        "--amp",
        choices=AMP,
        default="auto",
        help="mixed precision (default: auto, bf16 or fp16 on CUDA, float32 on a CPU, where "
        "bf16 trained 1.3x slower on the project's machine; fp16 needs CUDA)",
    )
    train.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    train.add_argument("--limit", type=int, help="keep only the first N items of each split (smoke runs)")

    evaluate = commands.add_parser(
        "evaluate",
        help="mAP@K, P@K and precision within radius 2 of a checkpoint",
        description="Encode the query and database splits of the checkpoint's dataset "
        "and print the retrieval metrics; also written as JSON.",
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, help="JSON file (default: evaluation.json next to the checkpoint)")
    _common(evaluate)
    evaluate.add_argument("--amp", choices=AMP, default="auto", help=AMP_ENCODE_HELP)
    evaluate.add_argument("--limit", type=int, help="keep only the first N items of each split")

    encode = commands.add_parser(
        "encode",
        help="write the packed codes of a split into a HammingIndex file",
        description="Encode one split of the checkpoint's dataset and save the codes "
        "as a HammingIndex (.npz) for `search`.",
    )
    encode.add_argument("--checkpoint", type=Path, required=True)
    encode.add_argument("--split", choices=("database", "query", "train"), default="database")
    encode.add_argument("--out", type=Path, required=True, help="the index file to write (.npz)")
    _common(encode)
    encode.add_argument("--amp", choices=AMP, default="auto", help=AMP_ENCODE_HELP)
    encode.add_argument("--limit", type=int, help="keep only the first N items of each split")

    search = commands.add_parser(
        "search",
        help="the nearest codes to an image's code",
        description="Encode an image with the index's model and list the k nearest "
        "items of the index by Hamming distance.",
    )
    search.add_argument("--index", type=Path, required=True, help="a file written by `encode`")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", type=Path, help="the query image")
    query.add_argument(
        "--query",
        type=int,
        metavar="N",
        help="use item N of the query split of the index's dataset instead of an image file",
    )
    search.add_argument("-k", type=int, default=10, help="results to show (default: 10)")
    search.add_argument("--checkpoint", type=Path, help="the model (default: the one the index was made with)")
    search.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="dataset folder (default: searched, see data/README.md)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when available)")
    parser.add_argument("--workers", type=int, help="data loader workers (default: 0 on CPU, up to 8 on CUDA)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# --------------------------------------------------------------------------- train


def cmd_train(args) -> None:
    from hhlib.data import get_dataset
    from hhlib.runs import nest_initialiser, train_run
    from hhlib.train import resolve_device

    device = resolve_device(args.device)
    out = args.out or Path("runs") / f"{args.dataset}-{args.preset}"
    img_size = 32 if args.preset == "cpu" else 224
    # The paper augments the list datasets (random crop + flip) but not CIFAR-10.
    augment = args.preset == "cpu" or not args.dataset.startswith("cifar10")
    started = time.perf_counter()
    data = get_dataset(
        args.dataset, root=args.root, split_seed=args.split_seed, img_size=img_size, limit=args.limit, augment=augment
    )
    load_seconds = time.perf_counter() - started
    _say(args, f"{data}; training on {device}")
    # NesT-B initialisation belongs to the paper preset; the cpu preset trains from scratch.
    pretrained = (
        nest_initialiser(args.pretrained, say=lambda text: _say(args, text)) if args.preset == "paper" else None
    )
    for bits in args.bits:
        run_dir = out / f"bits{bits}"
        metrics_path = run_dir / "metrics.json"
        if args.resume and metrics_path.is_file():
            _say(args, f"{metrics_path} exists: bits={bits} is done, skipping")
            continue
        _, metrics = train_run(
            data,
            bits,
            args.preset,
            run_dir,
            resume=args.resume,
            device=device,
            progress=not args.quiet,
            seed=args.seed,
            pretrained=pretrained,
            load_seconds=load_seconds,
            meta={"split_seed": args.split_seed, "limit": args.limit},
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            eval_every=args.eval_every,
            amp=args.amp,
            compile=args.compile,
            num_workers=args.workers,
        )
        load_seconds = 0.0
        print(
            f"bits={bits}: mAP@{data.topk or 'all'} {metrics['map']:.4f}, precision within radius 2 "
            f"{metrics['precision_radius2']:.4f}, train {metrics['train_seconds']:.0f} s, "
            f"total {metrics['total_seconds']:.0f} s -> {metrics_path}"
        )


# --------------------------------------------------------------------------- evaluate, encode, search


def _restore(args):
    """The best model of a checkpoint and its dataset, split as when it was trained."""
    from hhlib.data import get_dataset
    from hhlib.train import load_model

    model, state = load_model(args.checkpoint)
    limit = args.limit if args.limit is not None else state.get("limit")
    data = get_dataset(
        state["dataset"],
        root=args.root,
        split_seed=state.get("split_seed", 0),
        img_size=model.config.img_size,
        limit=limit,
    )
    return model, state, data


def cmd_evaluate(args) -> None:
    from hhlib.metrics import mean_average_precision, precision_at_k, precision_within_radius
    from hhlib.train import encode

    model, state, data = _restore(args)
    kw = dict(device=args.device, progress=not args.quiet, num_workers=args.workers, amp=args.amp)
    query = encode(model, data.query, desc="encode query", **kw)
    database = encode(model, data.database, desc="encode database", **kw)
    labels = (data.query.labels, data.database.labels)
    ks = [k for k in (1, 10, 100, 1000) if k <= len(data.database)]
    result = {
        "checkpoint": str(args.checkpoint),
        "dataset": data.name,
        "bits": model.config.bits,
        "epoch": (state.get("best") or {}).get("epoch", state["epoch"]),
        "topk": data.topk,
        "map": float(mean_average_precision(query, database, *labels, topk=data.topk)),
        "map_expected": float(mean_average_precision(query, database, *labels, topk=data.topk, ties="expected")),
        "precision_at_k": dict(zip(map(str, ks), map(float, precision_at_k(query, database, *labels, ks=ks)))),
        "precision_radius2": float(precision_within_radius(query, database, *labels, radius=2)),
    }
    at = result["topk"] or "all"
    print(f"{data.name}, {result['bits']} bits, epoch {result['epoch']}")
    print(f"  mAP@{at} (ties by index)     {result['map']:.4f}")
    print(f"  mAP@{at} (expected over ties) {result['map_expected']:.4f}")
    for k, p in result["precision_at_k"].items():
        print(f"  P@{k:<27} {p:.4f}")
    print(f"  precision within radius 2    {result['precision_radius2']:.4f}")
    out = args.out or args.checkpoint.with_name("evaluation.json")
    _write_json(out, result)
    print(f"-> {out}")


def cmd_encode(args) -> None:
    from hhlib.index import HammingIndex
    from hhlib.train import encode

    model, state, data = _restore(args)
    split = getattr(data, args.split)
    codes = encode(
        model,
        split,
        device=args.device,
        progress=not args.quiet,
        num_workers=args.workers,
        amp=args.amp,
        desc=f"encode {args.split}",
    )
    index = HammingIndex(model.config.bits)
    index.add(codes)
    index.metadata = {
        "checkpoint": str(args.checkpoint.resolve()),
        "dataset": data.name,
        "split": args.split,
        "split_seed": state.get("split_seed", 0),
        "limit": state.get("limit") if args.limit is None else args.limit,
        "labels": split.labels.argmax(1).tolist() if data.num_classes else None,
        "class_names": list(data.class_names),
    }
    path = index.save(args.out)
    print(f"{len(index)} codes of {model.config.bits} bits ({data.name} {args.split}) -> {path}")


def cmd_search(args) -> None:
    import torch

    from hhlib.data import DATASETS, get_dataset
    from hhlib.data.transforms import load_query_image
    from hhlib.index import HammingIndex
    from hhlib.train import load_model, resolve_device

    if args.image is not None and not args.image.is_file():
        raise UserError(f"no image at {args.image}")
    index = HammingIndex.load(args.index)
    meta = index.metadata or {}
    checkpoint = args.checkpoint or meta.get("checkpoint")
    if checkpoint is None:
        raise UserError(f"{args.index} does not name its model: pass --checkpoint")
    model, _ = load_model(checkpoint)
    if model.config.bits != index.bits:
        raise UserError(f"the model makes {model.config.bits}-bit codes, the index holds {index.bits}-bit codes")
    if args.image is not None:
        info = DATASETS.get(meta.get("dataset"))
        image = load_query_image(
            args.image,
            model.config.img_size,
            grey=bool(info and info.grey),
            list_file=bool(info and info.loader is None),
        )
        name = str(args.image)
    else:
        data = get_dataset(
            meta["dataset"],
            split_seed=meta.get("split_seed", 0),
            img_size=model.config.img_size,
            limit=meta.get("limit"),
        )
        if not 0 <= args.query < len(data.query):
            raise UserError(f"--query must lie in [0, {len(data.query)}), got {args.query}")
        image, label, _ = data.query[args.query]
        image = image.unsqueeze(0)
        name = f"query {args.query} ({data.class_names[int(label.argmax())]})"
    device = resolve_device(args.device)
    with torch.no_grad():
        code = model.to(device).encode(image.to(device)).cpu()
    distances, ids = index.search(code, args.k)
    labels, names = meta.get("labels"), meta.get("class_names")
    print(
        f"{name}: {min(args.k, len(index))} nearest of {len(index)} ({meta.get('dataset', '?')} "
        f"{meta.get('split', '')})"
    )
    print(f"{'rank':>4} {'id':>8} {'distance':>8}  class")
    for rank, (i, d) in enumerate(zip(ids[0].tolist(), distances[0].tolist()), 1):
        label = names[labels[i]] if labels and names else ""
        print(f"{rank:>4} {i:>8} {d:>8}  {label}")


# --------------------------------------------------------------------------- main


def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode, "search": cmd_search}


def main(argv: list[str] | None = None) -> int:
    from hhlib.data import DataFormatError, DatasetNotFoundError, SplitMismatchError

    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    except (DatasetNotFoundError, DataFormatError, SplitMismatchError, FileNotFoundError, ValueError) as error:
        if os.environ.get("HH_DEBUG"):
            raise
        print(f"hhlib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
