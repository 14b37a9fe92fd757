"""Training: one epoch, one evaluator, and the fit loop that joins them with checkpoints and resume.

:class:`TrainConfig`'s defaults are the paper's recipe (docs/DESIGN.md,
"Loss and training"); the presets of :mod:`hhlib.presets` change a few
fields. Runs are reproducible and survive a crash: every epoch reseeds its
own random streams from ``(seed, epoch)``, and a checkpoint written
atomically after every epoch (:mod:`hhlib.checkpoint`) holds everything
needed to continue, so a resumed run ends with the weights of an
uninterrupted one. Under torchrun the same loop runs on every process
(:mod:`hhlib.distributed`): each trains on its slice of the global batch
and encodes its share of the evaluation; rank 0 alone scores and writes.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from timm.optim import param_groups_weight_decay
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, Subset
from tqdm.auto import tqdm

from hhlib import distributed
from hhlib.backbones import backbone_name, build_model
from hhlib.checkpoint import load_checkpoint, save_checkpoint
from hhlib.methods import METHODS, Method, check_method, make_method
from hhlib.metrics import retrieval_scores
from hhlib.model import HashModel
from hhlib.quantize import QUANTIZERS, Quantizer, make_quantizer

__all__ = [
    "TrainConfig",
    "History",
    "NonFiniteLossError",
    "AMP_MODES",
    "fit",
    "train_one_epoch",
    "optimizer_step",
    "TrainState",
    "encode",
    "encode_batch_size",
    "evaluate",
    "load_model",
    "resolve_device",
]

AMP_MODES = ("auto", "bf16", "fp16", "off")
OPTIMIZERS = ("rmsprop", "adamw")
SCHEDULES = ("constant", "cosine")
# The loss when every code is zero: all pairs at theta = 0, positives and negatives weighted equally.
COLLAPSED_LOSS = 2 * math.log(2)


def _field(default, help: str, choices: tuple | None = None):
    """A TrainConfig field whose help (and choices) the command line shows."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, "choices": choices})
    return field(default=default, metadata={"help": help, "choices": choices})


def check_amp(amp: str) -> str:
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    return amp


@dataclass
class TrainConfig:
    """How to train. The defaults are the paper's recipe (RMSprop 2.5e-5, batch 64, mAP every 3 epochs)."""

    epochs: int = _field(15, "epochs to train")
    batch_size: int = _field(64, "training batch size")
    optimizer: str = _field("rmsprop", "the optimiser", OPTIMIZERS)
    lr: float = _field(2.5e-5, "peak learning rate")
    weight_decay: float = _field(1e-5, "weight decay, not applied to biases, norms and position embeddings")
    schedule: str = _field("constant", "learning rate after the warm-up: constant, or a cosine to 0", SCHEDULES)
    warmup_epochs: float = _field(0.0, "epochs of linear warm-up")
    grad_clip: float | None = _field(None, "largest global gradient norm (none: no clipping)")
    ema_decay: float | None = _field(
        None, "evaluate a moving average of the weights with this decay (none: the weights)"
    )
    method: str = _field("hybridhash", "the hashing method: its loss and state (hhlib.methods)", tuple(METHODS))
    method_options: dict = _field({}, "the method's hyper-parameters that differ from its paper's")
    quantizer: str = _field("sign", "how relaxed codes become bits (hhlib.quantize)", tuple(QUANTIZERS))
    eval_every: int | None = _field(3, "epochs between mAP evaluations (none: only after the last epoch)")
    amp: str = _field("auto", "mixed precision: auto is bf16 or fp16 on CUDA, off on a CPU", AMP_MODES)
    channels_last: bool = _field(True, "channels-last memory format (CUDA only)")
    compile: bool = _field(False, "torch.compile the model (CUDA; slow to start)")
    num_workers: int | None = _field(None, "data loader workers (none: 0 on a CPU, up to 8 on CUDA)")
    eval_batch_size: int | None = _field(None, "images encoded at a time (none: 64 on a CPU, 256 on CUDA)")
    seed: int = _field(0, "seed of initialisation, shuffling and augmentation")

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        check_amp(self.amp)
        check_method(self.method)
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {tuple(QUANTIZERS)}, got {self.quantizer!r}")
        unknown = sorted(set(self.method_options) - set(METHODS[self.method].defaults()))
        if unknown:
            raise ValueError(
                f"{self.method} takes the options {sorted(METHODS[self.method].defaults())}, not {unknown}"
            )
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the model is evaluated after ``epoch`` (always after the last)."""
        return epoch == self.epochs or (self.eval_every is not None and epoch % self.eval_every == 0)

    @classmethod
    def help(cls) -> dict[str, dict]:
        """Each field's type, default, help and choices: what the command line is made from."""
        return {f.name: {"type": f.type, "default": f.default, **f.metadata} for f in fields(cls)}


@dataclass
class History:
    """What happened during training, epoch by epoch and evaluation by evaluation."""

    epochs: list[dict] = field(default_factory=list)  # epoch, loss, seconds, images_per_second, lr
    evals: list[dict] = field(default_factory=list)  # epoch, map, precision_radius2, seconds
    best_epoch: int | None = None
    best_map: float | None = None
    prepare_seconds: float = 0.0  # the method's stages before the network (CNNH's target codes)

    @property
    def train_seconds(self) -> float:
        """The method's stages before the network and every epoch: what training cost."""
        return self.prepare_seconds + sum(e["seconds"] for e in self.epochs)

    @property
    def eval_seconds(self) -> float:
        return sum(e["seconds"] for e in self.evals)

    def best_eval(self) -> dict | None:
        return next((e for e in self.evals if e["epoch"] == self.best_epoch), None)

    def to_dict(self) -> dict:
        return asdict(self)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped, the last good checkpoint is kept."""


# --------------------------------------------------------------------------- devices


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    return device


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if check_amp(amp) == "off":
        return None
    if device.type != "cuda":
        # "auto" stays float32 on a CPU: training in bfloat16 was 1.3x slower
        # a step on the project's AVX-512 machine (encoding 1.6x faster), so
        # bfloat16 is only used where it is asked for
        if amp == "fp16":
            raise ValueError("amp='fp16' needs a CUDA device; on a CPU use 'bf16' or 'off'")
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _loader(
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    workers: int | None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    if workers is None:  # the machine's cores shared among the processes torchrun started on it
        workers = min(8, (os.cpu_count() or 1) // distributed.local_world_size()) if device.type == "cuda" else 0
    if shuffle and distributed.active():
        # the batches one process would draw (DataLoader's own sampler, same generator), each cut into N slices
        batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)
        return DataLoader(
            dataset,
            batch_sampler=_RankSlices(batches, distributed.rank(), distributed.world_size()),
            generator=generator,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            worker_init_fn=partial(_reseed_worker, distributed.rank()),
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


class _RankSlices(Sampler[list[int]]):
    """Rank r's part of each global batch: the r-th of N contiguous, near-equal slices, so rank order is batch order."""

    def __init__(self, batches: BatchSampler, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield np.array_split(np.asarray(batch), self.world)[self.rank].tolist()


def _reseed_worker(rank: int, worker_id: int) -> None:
    """A loader worker's streams, offset by rank: DataLoader seeds workers alike on every process."""
    seed = (torch.initial_seed() + rank * 1_000_003) % 2**63
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- encoding


def encode_batch_size(device: torch.device) -> int:
    """Images encoded at a time by default.

    On a CPU small batches are faster: the CPU preset encoded 35% (one
    thread) to 45% (two threads) more images per second in batches of 64
    than of 256, whose activations no longer fit in cache.
    """
    return 256 if device.type == "cuda" else 64


@torch.no_grad()
def encode(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int | None = None,
    device=None,
    progress: bool = True,
    desc: str = "encode",
    amp: str = "auto",
    num_workers: int | None = None,
    shard: bool = False,
) -> np.ndarray:
    """Binary codes of a whole dataset, (n, bits) int8 in {-1, +1}, in dataset order.

    ``batch_size`` None picks :func:`encode_batch_size` for the device.
    ``shard``: under torchrun, each process encodes one contiguous share of
    the dataset and every process gets all the codes, gathered in order.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (or None for the device's default), got {batch_size}")
    device = resolve_device(device)
    if shard and distributed.active():
        share = np.array_split(np.arange(len(dataset)), distributed.world_size())[distributed.rank()]
        mine = encode(model, Subset(dataset, share.tolist()), batch_size, device, progress, desc, amp, num_workers)
        (codes,) = distributed.gather(torch.from_numpy(mine).to(device))  # NCCL gathers tensors on the GPU
        return codes.cpu().numpy()
    batch_size = batch_size or encode_batch_size(device)
    dtype = _amp_dtype(amp, device)
    channels_last = device.type == "cuda"
    was_training = model.training
    model.eval().to(device)
    codes = []
    for images, _, _ in tqdm(
        _loader(dataset, batch_size, device, num_workers), desc=desc, disable=not progress, leave=False
    ):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, dtype):
            u = model(images)
        codes.append(model.quantizer(u).to(torch.int8).cpu())
    model.train(was_training)
    return torch.cat(codes).numpy() if codes else np.empty((0, model.config.bits), np.int8)


def evaluate(
    model: nn.Module,
    data,
    device=None,
    progress: bool = True,
    batch_size: int | None = None,
    amp: str = "auto",
    num_workers: int | None = None,
    ks: Sequence[int] = (1, 10, 100, 1000),
    database_codes: np.ndarray | None = None,
    shard: bool = False,
) -> dict | None:
    """Encode the query and database splits of ``data`` and score them: the one evaluator of hhlib.

    mAP at the dataset's top K (ties by database index, and expected over
    ties), precision within Hamming radius 2 and precision at each of ``ks``
    that the database holds, all from one count of the distances (:func:`hhlib.metrics.retrieval_scores`).
    ``database_codes`` are the database's codes when a method learned them
    directly (``Method.database == "learned"``); by default the model encodes the database.
    ``shard``: under torchrun, every process encodes a share of each split
    (:func:`encode`) and rank 0 alone scores them; the others get None.
    """
    start = time.perf_counter()
    kw = dict(batch_size=batch_size, device=device, progress=progress, amp=amp, num_workers=num_workers, shard=shard)
    query = encode(model, data.query, desc="encode query", **kw)
    if database_codes is None:
        database = encode(model, data.database, desc="encode database", **kw)
    elif len(database_codes) != len(data.database):
        raise ValueError(f"{len(database_codes)} database codes for a database of {len(data.database)} items")
    else:
        database = np.asarray(database_codes, dtype=np.int8)
    encode_seconds = time.perf_counter() - start
    if shard and not distributed.is_main():
        return None
    ks = [k for k in ks if k <= len(database)] or [len(database)]
    scores = retrieval_scores(query, database, data.query.labels, data.database.labels, topk=data.topk, ks=ks)
    return {
        "map": float(scores.map_index),
        "map_expected": float(scores.map_expected),
        "topk": data.topk,
        "precision_radius2": float(scores.precision_radius2),
        "precision_at_k": {str(k): float(p) for k, p in zip(scores.ks, scores.precision_at)},
        "encode_seconds": encode_seconds,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- checkpoints


def load_model(path: str | os.PathLike, best: bool = True) -> tuple[HashModel, dict]:
    """The network and its quantiser from a checkpoint (its best weights unless ``best=False``), and the checkpoint.

    The backbone is rebuilt from its configuration and given the head and
    activation of the method it was trained with, then the weights are loaded.
    """
    state = load_checkpoint(path)
    try:
        model = build_model(state["backbone"], state["model_config"])
        config = state["train_config"]
        make_method(config["method"], model.config.bits, config["method_options"]).adapt(model)
        weights = state["best"]["model"] if best and state.get("best") else state["model"]
        model.load_state_dict(weights)
        model.quantizer = Quantizer.from_state(state["quantizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not an hhlib model checkpoint this hhlib can load ({first})") from None
    return model.eval(), state


def training_split(data, method: Method | type[Method] | str = "hybridhash") -> Dataset:
    """The split ``method`` trains on: the training split, or the labelled database (ADSH, ``trains_on``)."""
    cls = METHODS[method] if isinstance(method, str) else method
    return data.database if cls.trains_on == "database" else data.train


def train_labels(data, method: Method | type[Method] | str = "hybridhash") -> torch.Tensor:
    """The 0/1 label matrix (n, num_classes), float32, of the split ``method`` trains on: what it sizes its state by."""
    return torch.as_tensor(np.asarray(training_split(data, method).labels), dtype=torch.float32)


def _seed_epoch(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seed every random stream for one epoch; return the generator of its shuffle.

    Deriving the seeds from (seed, epoch) rather than carrying one stream
    through the run is what lets a resumed run repeat an uninterrupted one.
    The shuffle is the same on every process; augmentation and stochastic
    depth draw per process (``rank``), rank 0 as a single process does.
    """
    epoch_seed = seed * 100_003 + epoch
    stream = epoch_seed + rank * 1_000_003
    random.seed(stream)
    np.random.seed(stream % 2**32)
    torch.manual_seed(stream)
    return torch.Generator().manual_seed(epoch_seed)


# --------------------------------------------------------------------------- the training state


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases, norms and position embeddings (timm's parameter groups)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, config.weight_decay, no_weight_decay_list=skip)
    if config.optimizer == "adamw":
        # fused: one kernel for all parameters instead of a loop over ~80 small tensors
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.RMSprop(groups, lr=config.lr)


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """A per-step schedule: a linear warm-up to the peak, then constant or a cosine to 0."""
    sched = torch.optim.lr_scheduler
    warmup = int(config.warmup_epochs * steps_per_epoch)
    after_warmup = max(1, config.epochs * steps_per_epoch - warmup)
    if config.schedule == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=after_warmup)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=1 / warmup, total_iters=max(1, warmup - 1))
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


@dataclass
class TrainState:
    """Everything a run changes while it trains, and what its checkpoint holds."""

    model: HashModel
    config: TrainConfig
    device: torch.device
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None
    history: History = field(default_factory=History)
    best: dict | None = None  # {"epoch", "map", "model"}: the best evaluated weights
    forward: nn.Module | None = None  # the model as the batches see it (compiled with config.compile)

    def __post_init__(self) -> None:
        if self.forward is None:
            wrapped = distributed.wrap(self.model, self.device)  # DistributedDataParallel under torchrun
            self.forward = torch.compile(wrapped) if self.config.compile else wrapped

    @classmethod
    def start(cls, model: HashModel, data, config: TrainConfig, device: torch.device) -> TrainState:
        """A fresh state: the method adapts the model's output, sizes its state, then the optimiser is built."""
        method = make_method(config.method, model.config.bits, config.method_options)
        method.adapt(model)
        method.setup(train_labels(data, method))
        if model.quantizer.kind != config.quantizer:
            model.quantizer = make_quantizer(config.quantizer, model.config.bits)
        model.to(device)
        method.to(device)
        if device.type == "cuda" and config.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = _optimizer(model, config)
        size = method.epoch_size(len(training_split(data, method)))
        _check_split(size, config.batch_size)
        steps = math.ceil(size / config.batch_size)
        scheduler = _schedule(optimizer, config, steps)
        scaler = torch.amp.GradScaler(device.type, enabled=_amp_dtype(config.amp, device) == torch.float16)
        # The average starts as a copy and warms up, so early evaluations are meaningful.
        ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True) if config.ema_decay else None
        return cls(model, config, device, method, optimizer, scheduler, scaler, ema)

    @property
    def evaluated(self) -> HashModel:
        """The weights that are evaluated and kept: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def keep_if_best(self, epoch: int, result: dict) -> None:
        self.history.evals.append({"epoch": epoch, **result})
        if self.history.best_map is None or result["map"] > self.history.best_map:
            self.history.best_epoch, self.history.best_map = epoch, result["map"]
            weights = {k: v.detach().cpu().clone() for k, v in self.evaluated.state_dict().items()}
            self.best = {"epoch": epoch, "map": result["map"], "model": weights}

    def state_dict(self, epoch: int, meta: dict) -> dict:
        """The checkpoint after ``epoch`` (docs/DESIGN.md, "Run folders and checkpoints")."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "quantizer": self.model.quantizer.to_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method_state": self.method.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "backbone": backbone_name(self.model),
            "model_config": self.model.config.to_dict(),
            "train_config": asdict(self.config),
            "history": self.history.to_dict(),
            "best": self.best,
            **meta,
        }

    def load_state_dict(self, state: dict, meta: dict) -> int:
        """Continue from a checkpoint of the same run; returns the epoch to start from."""
        _check_resumable(state, self.model, self.config, meta)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method_state"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.history, self.best = History(**state["history"]), state["best"]
        return state["epoch"] + 1


def _check_split(size: int, batch_size: int) -> None:
    """Refuse a global batch the processes cannot share: uneven, or a last batch with fewer items than processes."""
    distributed.local_batch_size(batch_size)
    last, world = size % batch_size, distributed.world_size()
    if 0 < last < world:
        raise ValueError(
            f"an epoch of {size} items in batches of {batch_size} ends with {last}, fewer than the {world} processes: "
            "change --batch-size"
        )


def _check_resumable(state: dict, model: HashModel, config: TrainConfig, meta: dict) -> None:
    """Refuse to continue a run with another model, quantiser, recipe or data."""
    differences = []
    if state["backbone"] != backbone_name(model):
        differences.append(f"backbone ({state['backbone']} in the checkpoint, {backbone_name(model)} now)")
    elif state["model_config"] != model.config.to_dict():
        differences.append("model configuration")
    if state["quantizer"]["kind"] != model.quantizer.kind:
        differences.append(f"quantizer ({state['quantizer']['kind']} in the checkpoint, {model.quantizer.kind} now)")
    free = ("num_workers", "eval_batch_size", "compile")  # free to change on resume
    current = {k: v for k, v in asdict(config).items() if k not in free}
    # A field the checkpoint lacks was added later; its default is how that run trained.
    saved = {k: v for k, v in {**asdict(TrainConfig()), **state["train_config"]}.items() if k in current}
    # Options are compared as the method sees them: an option left at its default equals it given.
    for options in (current, saved):
        options["method_options"] = {**METHODS[options["method"]].defaults(), **options["method_options"]}
    if saved != current:
        changed = sorted(k for k in current if saved[k] != current[k])
        differences.append(f"training configuration ({', '.join(changed)})")
    for key, value in meta.items():
        if key in state and state[key] != value:
            differences.append(f"{key} ({state[key]!r} in the checkpoint, {value!r} now)")
    if differences:
        raise ValueError(
            "cannot resume: the checkpoint was made with another "
            + ", ".join(differences)
            + "; use another --out folder or drop --resume"
        )


# --------------------------------------------------------------------------- one epoch, and fit


def train_one_epoch(
    state: TrainState, dataset: Dataset, epoch: int, progress: bool = True, checkpoint: Path | None = None
) -> dict:
    """One pass over ``dataset``; returns the epoch's record (loss, seconds, images per second, lr).

    Raises :class:`NonFiniteLossError` naming the epoch, the batch and the last good ``checkpoint``.
    """
    config, device, model = state.config, state.device, state.model
    amp_dtype = _amp_dtype(config.amp, device)
    sample = state.method.epoch_indices(epoch, len(dataset))
    if sample is not None:
        dataset = Subset(dataset, sample.tolist())  # items keep their own index: the method's state is sized by n
    shuffle = _seed_epoch(config.seed, epoch, distributed.rank())
    loader = _loader(dataset, config.batch_size, device, config.num_workers, True, shuffle)
    model.train()
    state.method.train()
    state.method.begin_epoch(epoch, config.epochs)
    start, total_loss, seen = time.perf_counter(), 0.0, 0
    batches = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)
    for batch, (images, labels, index) in enumerate(batches, 1):
        images = images.to(device, non_blocking=True)
        if device.type == "cuda" and config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels, index = labels.to(device, non_blocking=True), index.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            u = state.forward(images)
        # the global batch from every process (gradients to this one's codes), so the method's state stays whole
        u, labels, index = distributed.gather(u.float(), labels, index)
        loss = state.method(u, labels, index)  # the loss stays in float32 under autocast
        if not torch.isfinite(loss):
            where = f" ({checkpoint} holds epoch {epoch - 1})" if checkpoint and epoch > 1 else ""
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at epoch {epoch}, batch {batch}; training stopped{where}. "
                "Lower the learning rate or clip gradients (TrainConfig.grad_clip)."
            )
        optimizer_step(state, distributed.backward_loss(loss))
        total_loss += loss.item() * len(u)
        seen += len(u)
        batches.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    state.method.end_epoch(epoch)
    seconds = time.perf_counter() - start
    lr = state.optimizer.param_groups[0]["lr"]
    return {
        "epoch": epoch,
        "loss": total_loss / seen,
        "seconds": seconds,
        "images_per_second": seen / seconds,
        "lr": lr,
    }


def optimizer_step(state: TrainState, loss: torch.Tensor) -> None:
    """Backward, clip, optimiser and schedule step, moving average."""
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if state.config.grad_clip:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), state.config.grad_clip, foreach=True)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model, step=state.scheduler.last_epoch)


def _warn_if_collapsed(record: dict) -> None:
    if record["epoch"] > 1 and abs(record["loss"] - COLLAPSED_LOSS) < 2e-3:
        warnings.warn(
            f"epoch {record['epoch']}: the loss sits at 2 log 2 = {COLLAPSED_LOSS:.4f}, where all codes are zero "
            "(collapsed, or not yet learning). From scratch, lower the learning rate or train longer.",
            stacklevel=3,
        )


def fit(
    model: HashModel,
    data,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device=None,
    progress: bool = True,
    meta: dict | None = None,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` in place on ``data`` (a :func:`hhlib.data.get_dataset` result); return the :class:`History`.

    ``config`` defaults to the paper's recipe, and names the method (HybridHash's loss by default). With
    ``out_dir``, ``checkpoint.pt`` is written there after every epoch and ``resume`` continues from it.
    ``meta`` (dataset, split seed...) is stored in the checkpoint; ``on_epoch(history)`` is called after
    every epoch. The model ends with the weights of its best evaluation (the moving average's when
    ``config.ema_decay`` is set).
    """
    config = config or TrainConfig()
    if distributed.launched() and not distributed.active():
        raise RuntimeError("started as one of several processes, but no process group: call hhlib.distributed.setup")
    progress = progress and distributed.is_main()  # rank 0 alone shows progress, scores and writes
    state = TrainState.start(model, data, config, resolve_device(device))
    path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    meta = {"dataset": getattr(data, "name", None), **(meta or {})}
    first = _begin(state, data, path if resume else None, meta, progress)
    epochs = tqdm(
        range(first, config.epochs + 1), "epochs", disable=not progress, initial=first - 1, total=config.epochs
    )
    for epoch in epochs:
        record = train_one_epoch(state, training_split(data, state.method), epoch, progress, checkpoint=path)
        distributed.broadcast_buffers(state.method)  # the same state everywhere, whatever rounding did
        state.history.epochs.append(record)
        postfix = {"loss": f"{record['loss']:.4f}"}
        if config.evaluates_after(epoch):
            result = _evaluate(state, data, progress)
            state.keep_if_best(epoch, result)
            postfix["mAP"] = f"{result['map']:.4f}"
        epochs.set_postfix(postfix)
        if distributed.is_main():
            _warn_if_collapsed(record)
            if path is not None:
                save_checkpoint(path, state.state_dict(epoch, meta))
            if on_epoch is not None:
                on_epoch(state.history)
    if state.best is not None:
        model.load_state_dict(state.best["model"])
    return state.history


def _begin(state: TrainState, data, checkpoint: Path | None, meta: dict, progress: bool) -> int:
    """The first epoch: resume from ``checkpoint`` if rank 0 finds it (all ranks load it), else the method's stages."""
    if distributed.broadcast_object(checkpoint is not None and checkpoint.is_file()):
        first = state.load_state_dict(load_checkpoint(checkpoint), meta)
        if progress:
            tqdm.write(f"resuming from {checkpoint} after epoch {first - 1}")
    else:
        first, start = 1, time.perf_counter()
        state.method.prepare(train_labels(data, state.method).to(state.device))
        state.history.prepare_seconds = round(time.perf_counter() - start, 6)  # microseconds: choosing centres is quick
    distributed.broadcast_buffers(state.method)
    return first


def _evaluate(state: TrainState, data, progress: bool) -> dict:
    """Evaluate the kept weights: every process encodes a share of the splits, rank 0 scores, all get the result."""
    # DistributedDataParallel syncs buffers from rank 0 before each forward, but the last one's BatchNorm
    # update and the moving average's copy of it are each process's own: encode with rank 0's everywhere
    distributed.broadcast_buffers(state.evaluated)
    learned = state.method.database_codes()
    result = evaluate(
        state.evaluated,
        data,
        state.device,
        progress,
        state.config.eval_batch_size,
        num_workers=state.config.num_workers,
        database_codes=None if learned is None else learned.cpu().numpy(),
        shard=True,
    )
    return distributed.broadcast_object(result)
