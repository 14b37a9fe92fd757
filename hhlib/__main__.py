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
import ast
import os
import sys
import time
from pathlib import Path

import torch

from hhlib.checkpoint import write_json


class UserError(Exception):
    """An error to report in one line, not as a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


AMP_ENCODE_HELP = "precision of encoding (default: auto, bf16 or fp16 on CUDA, float32 on a CPU; fp16 needs CUDA)"
# TrainConfig fields set by flags of their own (shared with the other commands, or not a plain value).
OWN_FLAGS = {"num_workers": "--workers", "method_options": "--method-option"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hhlib", description="HybridHash deep hashing: train, evaluate, encode, search.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _train_parser(commands)
    _evaluate_parser(commands)
    _encode_parser(commands)
    _search_parser(commands)
    commands.add_parser(
        "methods",
        help="list the hashing methods, their options and each preset's settings for them",
        description="List the hashing methods of hhlib.methods: family, stages, paper, options with their "
        "paper defaults, and what each preset sets for them.",
    )
    return parser


def _train_parser(commands) -> None:
    from hhlib.backbones import BACKBONES
    from hhlib.presets import PRESETS

    train = commands.add_parser(
        "train",
        help="train one model per code length",
        description="Train HybridHash on a dataset, one model per --bits value. Writes OUT/bits{B}/checkpoint.pt "
        "(after every epoch) and OUT/bits{B}/metrics.json. Every field of the recipe can be set by its flag; "
        "unset, it is the preset's.",
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
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    train.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help=f"{presets} (default: cpu)")
    train.add_argument(
        "--out",
        type=Path,
        help="output folder (default: runs/DATASET-PRESET, and -METHOD-BACKBONE unless both are hybridhash)",
    )
    train.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default="hybridhash",
        help="the network: the preset's HybridHash, or the small plain CNN of docs/cpu_preset.md (default: hybridhash)",
    )
    train.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyper-parameter of the method in place of its paper's value, e.g. alpha=0.5 (repeatable; "
        "python -m hhlib methods lists them)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/bits{B}/checkpoint.pt where one exists; finished runs are skipped",
    )
    _common(train)
    train.add_argument("--split-seed", type=int, default=0, help="seed of the query/train/database split (default: 0)")
    train.add_argument(
        "--pretrained",
        default="auto",
        metavar="auto|none|PATH",
        help="ImageNet NesT-B initialisation of presets that start from it: auto downloads it through "
        "timm, PATH loads a saved state_dict, none trains from scratch (default: auto)",
    )
    train.add_argument("--limit", type=int, help="keep only the first N items of each split (smoke runs)")
    _recipe_flags(train.add_argument_group("recipe (hhlib.train.TrainConfig; default: the preset's)"), PRESETS)


def _recipe_flags(group, presets) -> None:
    """One flag per TrainConfig field, its help and each preset's value taken from the dataclass."""
    from hhlib.train import TrainConfig

    for name, spec in TrainConfig.help().items():
        if name in OWN_FLAGS:
            continue
        defaults = ", ".join(f"{p}: {presets[p].train_config().__dict__[name]}" for p in sorted(presets))
        kind, optional = spec["type"].split(" | ")[0], "None" in spec["type"]
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=f"{spec['help']} ({defaults})"
            )
            continue
        convert = {"int": int, "float": float, "str": str}[kind]
        group.add_argument(
            flag,
            type=_optional(convert) if optional else convert,
            choices=spec["choices"],
            default=None,
            metavar=None if spec["choices"] else kind.upper(),
            help=f"{spec['help']} ({defaults})",
        )


def _optional(convert):
    def parse(text: str):
        return "none" if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its "invalid int value" message
    return parse


def _evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="mAP@K, P@K and precision within radius 2 of a checkpoint",
        description="Encode the query and database splits of the checkpoint's dataset "
        "and print the retrieval metrics; also written as JSON.",
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, help="JSON file (default: evaluation.json next to the checkpoint)")
    _common(evaluate, encodes=True)


def _encode_parser(commands) -> None:
    encode = commands.add_parser(
        "encode",
        help="write the packed codes of a split, or of any list file or image folder, into a HammingIndex file",
        description="Encode one split of the checkpoint's dataset, or stream a list file or a folder of images of "
        "any size (--images: resumable, memory independent of its size), and save the codes as a HammingIndex "
        "(.npz) for `search`.",
    )
    encode.add_argument("--checkpoint", type=Path, required=True)
    source = encode.add_mutually_exclusive_group()
    source.add_argument("--split", choices=("database", "query", "train"), help="a split of the checkpoint's dataset")
    source.add_argument(
        "--images",
        type=Path,
        metavar="LIST|FOLDER",
        help="stream a list file ('path [0 1 ...]' lines, paths relative to --root or to its folder) or every "
        "image under a folder; rerun after a kill to continue (the work is kept in OUT.partial/)",
    )
    encode.add_argument("--out", type=Path, required=True, help="the index file to write (.npz)")
    _common(encode, encodes=True)
    stream = encode.add_argument_group("streaming (--images)")
    encode.add_argument("--batch-size", type=int, help="images per forward pass (default: 64 on a CPU, 256 on CUDA)")
    stream.add_argument("--chunk-size", type=int, help="images between two saved progress records (default: 4096)")
    stream.add_argument(
        "--resize-on",
        choices=("worker", "device"),
        help="resize in the loader workers (default; the codes of the in-memory path bit for bit) or on the "
        "model's device (faster on a GPU when the workers are the bottleneck)",
    )
    stream.add_argument(
        "--restart",
        action="store_true",
        help="start over, discarding OUT.partial/ (without it, a partial of the same model and input is continued "
        "and one of another is refused)",
    )


def _search_parser(commands) -> None:
    search = commands.add_parser(
        "search",
        help="the nearest codes to an image's code",
        description="Encode an image with the index's model and list the k nearest items of the index by "
        "Hamming distance.",
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
    search.add_argument(
        "--backend",
        choices=("exact", "ivf", "mih"),
        help="exact (brute force) or approximate search: ivf (binary k-means cells) or mih (multi-index hashing); "
        "default: the index file's own, exact unless it was saved otherwise",
    )


def _common(parser: argparse.ArgumentParser, encodes: bool = False) -> None:
    """Flags every command shares; ``encodes``: also those of the commands that encode a checkpoint's splits."""
    from hhlib.train import AMP_MODES

    parser.add_argument("--root", type=Path, help="dataset folder (default: searched, see data/README.md)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when available)")
    parser.add_argument(
        "--workers",
        type=int,
        help="data loader workers (default: 0 on a CPU, up to 8 on CUDA; encode --images: one core in two on a CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if encodes:
        parser.add_argument("--amp", choices=AMP_MODES, default="auto", help=AMP_ENCODE_HELP)
        parser.add_argument("--limit", type=int, help="keep only the first N items of each split")


# --------------------------------------------------------------------------- train


def cmd_train(args) -> None:
    from hhlib import distributed
    from hhlib.data import get_dataset
    from hhlib.presets import get_preset
    from hhlib.runs import nest_initialiser, run_name, train_run
    from hhlib.train import TrainConfig, resolve_device

    device, preset = distributed.setup(resolve_device(args.device)), get_preset(args.preset)  # torchrun: join
    args.quiet = args.quiet or not distributed.is_main()  # rank 0 alone reports
    recipe = _recipe(args, TrainConfig.help())
    method = recipe.pop("method", "hybridhash")
    preset.train_config(method, args.backbone, **recipe)  # a bad value or option fails here, before the data loads
    out = args.out or Path("runs") / run_name(args.dataset, args.preset, method, args.backbone)
    from hhlib.methods import METHODS

    started = time.perf_counter()
    with distributed.main_first():  # under torchrun one process downloads a missing dataset, then the rest read it
        data = get_dataset(
            args.dataset,
            root=args.root,
            split_seed=args.split_seed,
            img_size=preset.img_size,
            limit=args.limit,
            augment=preset.augments(args.dataset),
        )
    load_seconds = time.perf_counter() - started
    _say(args, f"{data}; training on {device}")
    pretrained = None
    if preset.initialisation == "nest" and args.backbone == "hybridhash":
        pretrained = nest_initialiser(args.pretrained, say=lambda text: _say(args, text))
    for bits in args.bits:
        run_dir = out / f"bits{bits}"
        if args.resume and distributed.broadcast_object((run_dir / "metrics.json").is_file()):  # rank 0's view
            _say(args, f"{run_dir / 'metrics.json'} exists: bits={bits} is done, skipping")
            continue
        _, metrics = train_run(
            data,
            bits,
            args.preset,
            run_dir,
            method=method,
            backbone=args.backbone,
            resume=args.resume,
            device=device,
            progress=not args.quiet,
            pretrained=pretrained,
            load_seconds=load_seconds,
            meta={"split_seed": args.split_seed, "limit": args.limit},
            **recipe,
        )
        load_seconds = 0.0
        if not distributed.is_main():
            continue
        print(
            f"{method} on {args.backbone}, bits={bits}: mAP@{data.topk or 'all'} {metrics['map']:.4f}, "
            f"precision within radius 2 {metrics['precision_radius2']:.4f}, train {metrics['train_seconds']:.0f} s, "
            f"total {metrics['total_seconds']:.0f} s -> {run_dir / 'metrics.json'}"
        )
        if METHODS[method].trains_on == "database":
            print(f"  {method} trained on the labelled database, not the training split: another protocol")
    distributed.teardown()


def _recipe(args, fields: dict) -> dict:
    """The recipe fields set on the command line ('none' unsets an optional one); the rest stay the preset's."""
    given = {name: getattr(args, OWN_FLAGS.get(name, name).lstrip("-").replace("-", "_")) for name in fields}
    recipe = {name: None if value == "none" else value for name, value in given.items() if value is not None}
    recipe["method_options"] = dict(_option(text) for text in recipe.pop("method_options"))
    return recipe


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a Python literal (1e-3, True, 'name') or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--method-option takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key.strip(), value.strip()


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
    from hhlib.train import evaluate

    model, state, data = _restore(args)
    scores = evaluate(model, data, device=args.device, progress=not args.quiet, amp=args.amp, num_workers=args.workers)
    epoch = (state.get("best") or {}).get("epoch", state["epoch"])
    result = {
        "checkpoint": str(args.checkpoint),
        "dataset": data.name,
        "bits": model.config.bits,
        "epoch": epoch,
        **{k: v for k, v in scores.items() if k not in ("seconds", "encode_seconds")},
    }
    at = result["topk"] or "all"
    print(f"{data.name}, {result['bits']} bits, epoch {result['epoch']}")
    print(f"  mAP@{at} (ties by index)     {result['map']:.4f}")
    print(f"  mAP@{at} (expected over ties) {result['map_expected']:.4f}")
    for k, p in result["precision_at_k"].items():
        print(f"  P@{k:<27} {p:.4f}")
    print(f"  precision within radius 2    {result['precision_radius2']:.4f}")
    out = write_json(args.out or args.checkpoint.with_name("evaluation.json"), result)
    print(f"-> {out}")


def cmd_encode(args) -> None:
    if args.images is not None:
        return _encode_images(args)
    from hhlib.retrieval import database_index

    streaming = [flag for flag in ("chunk_size", "resize_on", "restart") if getattr(args, flag)]
    if streaming:
        raise UserError(f"--{streaming[0].replace('_', '-')} applies to --images, not to a split")
    args.split = args.split or "database"
    model, _, data = _restore(args)
    index = database_index(
        model,
        data,
        args.split,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.quiet,
        amp=args.amp,
        num_workers=args.workers,
        batch_size=args.batch_size,
    )
    path = index.save(args.out)
    print(f"{len(index)} codes of {model.config.bits} bits ({data.name} {args.split}) -> {path}")


def _encode_images(args) -> None:
    """``encode --images``: stream a list file or a folder into the index file (hhlib.stream)."""
    from hhlib.stream import DEFAULT_CHUNK, encode_images
    from hhlib.train import load_model

    if args.limit is not None:
        raise UserError("--limit shortens a split of the checkpoint's dataset; it does not apply to --images")
    model, state = load_model(args.checkpoint)
    result = encode_images(
        model,
        args.images,
        args.out,
        checkpoint=args.checkpoint,
        dataset=state.get("dataset"),
        root=args.root,
        resize_on=args.resize_on or "worker",
        batch_size=args.batch_size,
        chunk_size=args.chunk_size or DEFAULT_CHUNK,
        device=args.device,
        workers=args.workers,
        amp=args.amp,
        progress=not args.quiet,
        restart=args.restart,
        say=lambda text: print(text, file=sys.stderr),
    )
    encoded = result.count - result.resumed_from
    if encoded:
        _say(args, f"encoded {encoded} images in {result.seconds:.1f} s ({result.images_per_second:,.0f} images/s)")
    print(f"{result.count} codes of {model.config.bits} bits ({args.images}) -> {result.path}")


def cmd_search(args) -> None:
    from hhlib.index import HammingIndex
    from hhlib.retrieval import check_index
    from hhlib.train import load_model, resolve_device

    if args.image is not None and not args.image.is_file():
        raise UserError(f"no image at {args.image}")
    index = HammingIndex.load(args.index, backend=args.backend)
    meta = index.metadata or {}
    checkpoint = args.checkpoint or meta.get("checkpoint")
    if checkpoint is None:
        raise UserError(f"{args.index} does not name its model: pass --checkpoint")
    model, _ = load_model(checkpoint)
    check_index(index, model)
    name, image = _search_query(args, model, meta)
    device = resolve_device(args.device)
    with torch.no_grad():
        code = model.to(device).encode(image.to(device)).cpu()
    distances, ids = index.search(code, args.k)
    found = ids[0] >= 0  # an approximate backend may find fewer than k
    ids, distances = ids[0][found].tolist(), distances[0][found].tolist()
    where = meta.get("source") or f"{meta.get('dataset', '?')} {meta.get('split', '')}"
    backend = "" if index.backend == "exact" else f", {index.backend} search"
    print(f"{name}: {len(ids)} nearest of {len(index)} ({where}{backend})")
    print(f"{'rank':>4} {'id':>8} {'distance':>8}  {'path' if meta.get('source') else 'class'}")
    for rank, (i, d, what) in enumerate(zip(ids, distances, _describe(args.index, meta, ids)), 1):
        print(f"{rank:>4} {i:>8} {d:>8}  {what}")


def _describe(path: Path, meta: dict, ids: list[int]) -> list[str]:
    """What to show of each result: its class names, after its image path in a streamed index."""
    labels, names = meta.get("labels"), meta.get("class_names")
    classes = [_class_names(labels[i], names) if labels and names else "" for i in ids]
    if not meta.get("source"):
        return classes
    from hhlib.stream import index_paths

    return [f"{image}  {label}".rstrip() for image, label in zip(index_paths(path, ids), classes)]


def _class_names(label, names: list[str]) -> str:
    """A class id's name, or the names of a multi-label item's ids."""
    return ", ".join(names[c] for c in label) if isinstance(label, list) else names[label]


def _search_query(args, model, meta: dict):
    """The query of ``search``: an image file, or item N of the index's query split."""
    from hhlib.data import get_dataset
    from hhlib.data.transforms import load_query_image
    from hhlib.stream import preprocess_for

    if args.image is not None:  # prepared as encode --images prepares the database's images
        prepare = preprocess_for(model, meta.get("dataset"))
        image = load_query_image(args.image, prepare.img_size, grey=prepare.grey, list_file=prepare.crop)
        return str(args.image), image
    data = get_dataset(
        meta["dataset"], split_seed=meta.get("split_seed", 0), img_size=model.config.img_size, limit=meta.get("limit")
    )
    if not 0 <= args.query < len(data.query):
        raise UserError(f"--query must lie in [0, {len(data.query)}), got {args.query}")
    image, label, _ = data.query[args.query]
    return f"query {args.query} ({data.class_names[int(label.argmax())]})", image.unsqueeze(0)


def cmd_methods(args) -> None:
    from hhlib.methods import METHODS
    from hhlib.presets import PRESETS

    for name, cls in METHODS.items():
        print(f"{name} ({cls.family}): {cls.citation}")
        print(f"  stages: {'; '.join(cls.stages)}; database codes: {cls.database}; output: {cls.output}")
        if cls.trains_on == "database":
            print("  trains on the labelled database (its labels are supervision the other families never see)")
        print(f"  options (paper defaults): {cls.defaults() or 'none'}")
        for preset in PRESETS.values():
            own = preset.methods.get(name)
            if own:
                print(f"  under --preset {preset.name}: {own}")
            for key, fields in preset.methods.items():
                if isinstance(key, tuple) and key[0] == name:
                    print(f"  under --preset {preset.name} --backbone {key[1]}: {fields}")


def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------- main


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "encode": cmd_encode,
    "search": cmd_search,
    "methods": cmd_methods,
}


def main(argv: list[str] | None = None) -> int:
    from hhlib.data import DataFormatError, DatasetNotFoundError, SplitMismatchError

    args = argparse.Namespace(command="")  # what the handlers read, should parsing itself be interrupted
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
        again = {"train": "rerun with --resume to continue from the last checkpoint"}
        if args.command == "encode" and getattr(args, "images", None) is not None:
            again["encode"] = "run the same command again to continue after the last saved chunk"
        print(f"interrupted; {again.get(args.command, 'nothing was written')}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
