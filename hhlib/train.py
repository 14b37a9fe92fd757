"""Training HybridHash: the fit loop, evaluation, checkpoints and resume.

The paper's recipe (DESIGN.md section 5) is :meth:`TrainConfig.paper`:
RMSprop at 2.5e-5 from ImageNet NesT-B, batch 64, mAP every 3 epochs with
the best model kept, mixed precision on GPU. :meth:`TrainConfig.cpu` is a
recipe for the small CPU model trained from scratch, which needs a larger,
warmed-up, clipped learning rate to learn in minutes (see its docstring).

Runs are reproducible and survive a crash: every epoch reseeds its own
random streams from ``(seed, epoch)``, and a checkpoint written atomically
after every epoch holds everything needed to continue (model, optimiser,
scheduler, scaler, the loss's memory bank, history, best model). Resuming
a killed run gives the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hhlib.losses import WeightedLikelihoodLoss
from hhlib.metrics import mean_average_precision, precision_within_radius
from hhlib.model import HybridHash, HybridHashConfig, binary_codes

__all__ = [
    "TrainConfig",
    "History",
    "NonFiniteLossError",
    "fit",
    "encode",
    "encode_batch_size",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]

CHECKPOINT_FORMAT = 1
AMP_MODES = ("auto", "bf16", "fp16", "off")
# The loss when every code is zero: all pairs at theta = 0, positives and negatives weighted equally.
COLLAPSED_LOSS = 2 * math.log(2)


@dataclass
class TrainConfig:
    """How to train. Defaults are the paper's recipe on GPU."""

    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "rmsprop"  # "rmsprop" (paper) or "adamw"
    lr: float = 2.5e-5  # peak learning rate
    weight_decay: float = 1e-5  # not applied to biases, norms and position embeddings
    schedule: str = "constant"  # "constant" or "cosine" (linear warm-up, then cosine to 0)
    warmup_epochs: float = 0.0
    grad_clip: float | None = None  # max global gradient norm
    ema_decay: float | None = None  # evaluate an exponential moving average of the weights
    alpha: float = 0.5  # theta = alpha * u . U in the loss
    quantization: float = 0.0  # weight of the (u - sign u)^2 term; 0 is the paper's loss
    binary_bank: bool = False  # the loss's memory bank holds sign(u), not u (the paper)
    smoothing: float = 0.0  # pairwise targets 1 - s/2 and s/2 instead of 1 and 0 (the paper)
    eval_every: int = 3  # epochs between mAP evaluations (the last epoch is always evaluated)
    amp: str = "auto"  # "auto" (bf16 or fp16 on CUDA, off on CPU), "bf16", "fp16" (CUDA only) or "off"
    channels_last: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model (CUDA; slow to start)
    num_workers: int | None = None  # data loader workers; None: 0 on CPU, up to 8 on CUDA
    eval_batch_size: int | None = None  # images encoded at a time; None: 64 on a CPU, 256 on CUDA
    seed: int = 0

    @classmethod
    def paper(cls, **overrides) -> TrainConfig:
        """The paper's recipe: RMSprop 2.5e-5, wd 1e-5, batch 64, 15 epochs, mAP every 3."""
        return cls(**overrides)

    @classmethod
    def cpu(cls, **overrides) -> TrainConfig:
        """From scratch on a 2-core CPU in about twelve minutes (HybridHashConfig.cpu, 32 px).

        AdamW with a linear warm-up and a cosine decay: from scratch the hybrid
        model is sensitive to the learning rate (at a peak of 2e-3 the codes
        collapsed to zero within five epochs, here as in DESIGN.md section 7),
        so the peak stays at 1e-3, reached after a warm-up, and gradients are
        clipped. Batch 32 (twice the updates per epoch of 64 for 9% more
        compute) and alpha 1.0 (twice the gradient of the likelihood at the
        same codes) learn faster: in 20-epoch runs on a 10,000-image database
        they took mAP from 0.699 (batch 64, alpha 0.5) to 0.740; alpha 0.25
        and 0.1 gave 0.742 and 0.715. How much the data are augmented is set
        by the dataset (Fashion-MNIST: shifts of up to 2 px and flips), and
        matters more than any of these. The loss's memory bank holds the signs
        of the codes (``binary_bank``): with the paper's relaxed bank, the
        classes the model confuses (shirts, T-shirts, pullovers, coats) kept
        codes near zero whose signs were noise. The binary bank took mAP
        from 0.758 to 0.805 in 20-epoch runs, and the full 60-epoch run from
        0.814 to 0.824. The pairwise targets are smoothed to 0.015 / 0.985
        (``smoothing=0.03``): the codes then stay off tanh's flat ends, so
        the randomly rotated signs of ``HybridHashConfig.cpu`` can rank the
        images the model is less sure of after the typical ones (the full
        run: 0.8236 to 0.8373; alone, smoothing or the rotation gained
        less). An exponential average of the weights (decay 0.998) is what
        gets evaluated. Mid-run evaluation would cost as much as
        several epochs (encoding 65,000 images), so the model is evaluated
        once, at the end.
        """
        defaults = dict(
            epochs=60,
            batch_size=32,
            optimizer="adamw",
            lr=1e-3,
            alpha=1.0,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=2.0,
            grad_clip=1.0,
            ema_decay=0.998,
            binary_bank=True,
            smoothing=0.03,
            eval_every=60,  # once, at the end
        )
        defaults.update(overrides)
        return cls(**defaults)

    def __post_init__(self) -> None:
        if self.optimizer not in ("rmsprop", "adamw"):
            raise ValueError(f"optimizer must be 'rmsprop' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


@dataclass
class History:
    """What happened during training, epoch by epoch and evaluation by evaluation."""

    epochs: list[dict] = field(default_factory=list)  # epoch, loss, seconds, images_per_second, lr
    evals: list[dict] = field(default_factory=list)  # epoch, map, precision_radius2, seconds
    best_epoch: int | None = None
    best_map: float | None = None

    @property
    def train_seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)

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
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    if amp == "off":
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
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


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
) -> np.ndarray:
    """Binary codes of a whole dataset, (n, bits) int8 in {-1, +1}, in dataset order.

    ``batch_size`` None picks :func:`encode_batch_size` for the device.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (or None for the device's default), got {batch_size}")
    device = resolve_device(device)
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
        codes.append(binary_codes(model, u).to(torch.int8).cpu())
    model.train(was_training)
    return torch.cat(codes).numpy()


def evaluate(
    model: nn.Module,
    data,
    device=None,
    progress: bool = True,
    batch_size: int | None = None,
    amp: str = "auto",
    num_workers: int | None = None,
) -> dict:
    """mAP at the dataset's top K and precision within Hamming radius 2, query vs database.

    ``data`` is a :func:`hhlib.data.get_dataset` result. Ties in Hamming
    distance are broken by database index (see :mod:`hhlib.metrics`).
    """
    start = time.perf_counter()
    kw = dict(batch_size=batch_size, device=device, progress=progress, amp=amp, num_workers=num_workers)
    query = encode(model, data.query, desc="encode query", **kw)
    database = encode(model, data.database, desc="encode database", **kw)
    encode_seconds = time.perf_counter() - start
    return {
        "map": float(mean_average_precision(query, database, data.query.labels, data.database.labels, topk=data.topk)),
        "topk": data.topk,
        "precision_radius2": float(
            precision_within_radius(query, database, data.query.labels, data.database.labels, radius=2)
        ),
        "encode_seconds": encode_seconds,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` atomically: a crash mid-write never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an hhlib checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def load_model(path: str | os.PathLike, best: bool = True) -> tuple[HybridHash, dict]:
    """A HybridHash from a checkpoint (its best weights unless ``best=False``) and the checkpoint."""
    state = load_checkpoint(path)
    model = HybridHash(HybridHashConfig(**state["model_config"]))
    weights = state["best"]["model"] if best and state.get("best") else state["model"]
    model.load_state_dict(weights)
    return model.eval(), state


def _rng_state() -> dict:
    """For inspection: resuming does not need it, since each epoch reseeds from (seed, epoch)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed every random stream for one epoch; return the generator of its shuffle.

    Deriving the seeds from (seed, epoch) rather than carrying one stream
    through the run is what lets a resumed run repeat an uninterrupted one.
    """
    epoch_seed = seed * 100_003 + epoch
    random.seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    torch.manual_seed(epoch_seed)
    return torch.Generator().manual_seed(epoch_seed)


# --------------------------------------------------------------------------- fit


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # Biases, norms and position embeddings get no weight decay, as in timm.
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        # fused: one kernel for all parameters instead of a loop over ~80 small tensors
        # (a tenth of a CPU training step of the small preset).
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.RMSprop(groups, lr=config.lr)


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    model: HybridHash,
    data,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device=None,
    progress: bool = True,
    meta: dict | None = None,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` on ``data`` (a :func:`hhlib.data.get_dataset` result).

    Args:
        model: the HybridHash to train, in place. At the end it holds the
            weights of the best evaluation (the averaged weights when
            ``config.ema_decay`` is set).
        data: train, query and database splits with their protocol facts.
        config: the recipe; :meth:`TrainConfig.paper` by default.
        out_dir: where ``checkpoint.pt`` is written after every epoch
            (atomically); None keeps everything in memory.
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        device: "cpu", "cuda", a torch.device, or None for the best available.
        progress: show tqdm bars.
        meta: extra facts stored in the checkpoint (dataset name, split seed...).
        on_epoch: called with the history after every epoch (live plots, logs).

    Returns:
        The :class:`History`: loss, seconds and images per second per epoch,
        mAP per evaluation, the best epoch.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the message names
            the epoch and batch, and the last good checkpoint stays on disk.
    """
    config = config or TrainConfig.paper()
    device = resolve_device(device)
    checkpoint_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    model.to(device)
    if device.type == "cuda" and config.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion = WeightedLikelihoodLoss(
        len(data.train),
        data.num_classes,
        model.config.bits,
        config.alpha,
        config.quantization,
        config.binary_bank,
        config.smoothing,
    ).to(device)
    loader_steps = math.ceil(len(data.train) / config.batch_size)
    optimizer = _optimizer(model, config)
    scheduler = _schedule(optimizer, config, loader_steps)
    amp_dtype = _amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # The average starts as a copy and warms up, so early evaluations are meaningful.
    ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True) if config.ema_decay else None
    evaluated = ema.module if ema is not None else model  # the weights that are evaluated and kept
    history, best, start_epoch = History(), None, 1
    meta = {"dataset": getattr(data, "name", None), **(meta or {})}

    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state, model, config, meta)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        criterion.load_state_dict(state["loss"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        history = History(**state["history"])
        best = state["best"]
        start_epoch = state["epoch"] + 1
        if progress:
            tqdm.write(f"resuming from {checkpoint_path} after epoch {state['epoch']}")

    step_model = torch.compile(model) if config.compile else model

    def checkpoint(epoch: int) -> None:
        if checkpoint_path is None:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "loss": criterion.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None,
                "rng": _rng_state(),
                "model_config": model.config.to_dict(),
                "train_config": asdict(config),
                "history": history.to_dict(),
                "best": best,
                **meta,
            },
        )

    epochs = tqdm(
        range(start_epoch, config.epochs + 1),
        desc="epochs",
        disable=not progress,
        initial=start_epoch - 1,
        total=config.epochs,
    )
    for epoch in epochs:
        generator = _seed_epoch(config.seed, epoch)
        loader = _loader(data.train, config.batch_size, device, config.num_workers, shuffle=True, generator=generator)
        model.train()
        start, total_loss, seen = time.perf_counter(), 0.0, 0
        batches = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)
        for batch, (images, labels, index) in enumerate(batches, 1):
            images = images.to(device, non_blocking=True)
            if device.type == "cuda" and config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels, index = labels.to(device, non_blocking=True), index.to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                u = step_model(images)
            loss = criterion(u.float(), labels, index)
            if not torch.isfinite(loss):
                where = f" ({checkpoint_path} holds epoch {epoch - 1})" if checkpoint_path and epoch > 1 else ""
                raise NonFiniteLossError(
                    f"the loss became {loss.item()} at epoch {epoch}, batch {batch}; training stopped"
                    f"{where}. Lower the learning rate or clip gradients (TrainConfig.grad_clip)."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(model, step=scheduler.last_epoch)
            total_loss += loss.item() * len(images)
            seen += len(images)
            batches.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        seconds = time.perf_counter() - start
        history.epochs.append(
            {
                "epoch": epoch,
                "loss": total_loss / seen,
                "seconds": seconds,
                "images_per_second": seen / seconds,
                "lr": optimizer.param_groups[0]["lr"],
            }
        )
        postfix = {"loss": f"{total_loss / seen:.4f}"}
        if epoch > 1 and abs(total_loss / seen - COLLAPSED_LOSS) < 2e-3:
            warnings.warn(
                f"epoch {epoch}: the loss sits at 2 log 2 = {COLLAPSED_LOSS:.4f}, where all codes are zero "
                "(collapsed, or not yet learning). From scratch, lower the learning rate or train longer.",
                stacklevel=2,
            )

        if epoch % config.eval_every == 0 or epoch == config.epochs:
            result = evaluate(
                evaluated,
                data,
                device=device,
                progress=progress,
                batch_size=config.eval_batch_size,
                num_workers=config.num_workers,
            )
            history.evals.append({"epoch": epoch, **result})
            if history.best_map is None or result["map"] > history.best_map:
                history.best_epoch, history.best_map = epoch, result["map"]
                best = {
                    "epoch": epoch,
                    "map": result["map"],
                    "model": {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()},
                }
            postfix["mAP"] = f"{result['map']:.4f}"
        epochs.set_postfix(postfix)
        checkpoint(epoch)
        if on_epoch is not None:
            on_epoch(history)

    if best is not None:
        model.load_state_dict(best["model"])
    return history


def _check_resumable(state: dict, model: HybridHash, config: TrainConfig, meta: dict) -> None:
    """Refuse to continue a run with another model, recipe or data."""
    differences = []
    if state["model_config"] != model.config.to_dict():
        differences.append("model configuration")
    # A field the checkpoint lacks was added later; its default is how that run trained.
    saved = {**asdict(TrainConfig()), **state["train_config"]}
    current = asdict(config)
    for key in ("num_workers", "eval_batch_size", "compile"):  # free to change on resume
        saved.pop(key, None), current.pop(key, None)
    if saved != current:
        differences.append("training configuration")
    for key, value in meta.items():
        if key in state and state[key] != value:
            differences.append(f"{key} ({state[key]!r} in the checkpoint, {value!r} now)")
    if differences:
        raise ValueError(
            "cannot resume: the checkpoint was made with another "
            + ", ".join(differences)
            + "; use another --out folder or drop --resume"
        )
