"""Training on two CPU processes (gloo) under torchrun: the run of one process, and resumable after a kill.

Run by pytest, this file launches torchrun; run by torchrun (``torchrun
--standalone --nproc_per_node=2 tests/test_distributed.py OUT``) it is the
worker: on every process it trains the deterministic model of :func:`_model`
with :func:`hhlib.train.fit` into OUT/two, then runs the command line's
uninterrupted run into OUT/straight (one launch for both: starting
torchrun and importing hhlib twice costs about 13 s on 2 busy cores).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hhlib import HybridHash, HybridHashConfig, distributed
from hhlib.checkpoint import load_checkpoint
from hhlib.presets import preset_configs
from hhlib.train import _check_split, fit

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import synthetic_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
# float32 sums in another order: the half-batch forward passes and the gradient all-reduce round differently
# from one process's full batch (1e-7 relative a step); 14 AdamW steps of lr 1e-3 grew that to 2e-6 at most
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside this Python")


def _model() -> HybridHash:
    """A small HybridHash with no stochastic depth: with unaugmented data, every batch is deterministic."""
    torch.manual_seed(0)
    config = dict(embed_dims=(16, 32, 64), num_heads=(2, 4, 8), depths=(1, 1, 1), drop_path_rate=0.0)
    return HybridHash(HybridHashConfig.cpu(bits=16, **config))


def _fit(out: Path, method: str):
    """Two epochs of the CPU recipe in global batches of 64 on the synthetic squares (400 items: 7 batches)."""
    _, config = preset_configs("cpu", 16, method, epochs=2, batch_size=64, warmup_epochs=0.5, grad_clip=None)
    return fit(_model(), synthetic_data(), config, out, progress=False)


def _torchrun(*args: str) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args]


def _flags(out: Path) -> list[str]:
    """3 epochs of the CPU preset on 192 digits, in global batches of 32, resumed where a checkpoint exists."""
    flags = ["--dataset", "digits", "--limit", "192", "--bits", "16", "--epochs", "3", "--eval-every", "2"]
    return ["train", *flags, "--batch-size", "32", "--out", str(out), "--quiet", "--resume"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The worker's runs on two processes: OUT/two-METHOD (fit) and OUT/straight (the command line)."""
    out = tmp_path_factory.mktemp("distributed")
    subprocess.run(_torchrun(__file__, str(out)), env=ENV, cwd=REPO, check=True, timeout=300)
    return out


# The method state that spans the training set: HybridHash's memory bank (codes U, labels Y) of the 400
# training items, and ADSH's database codes V (its DCC step after the last epoch) with the sample's codes U.
STATE = {"hybridhash": ("U", "Y"), "adsh": ("V", "U")}


@pytest.mark.parametrize("method", STATE)
def test_two_processes_train_as_one_over_the_global_batch(runs, tmp_path, method):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker (OMP_NUM_THREADS=1): on 2 busy cores, 2 threads are slower
    try:
        _fit(tmp_path / "one", method)
    finally:
        torch.set_num_threads(threads)
    two = load_checkpoint(runs / f"two-{method}" / "checkpoint.pt")
    one = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    assert two["epoch"] == one["epoch"] == 2
    losses = [[e["loss"] for e in run["history"]["epochs"]] for run in (two, one)]
    assert losses[0] == pytest.approx(losses[1], rel=0, abs=ATOL)
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=0, atol=ATOL, msg=name)
    # the optimiser's moments are the gradients' own scale: N times the loss undoes DDP's average over N
    for i, moments in one["optimizer"]["state"].items():
        torch.testing.assert_close(two["optimizer"]["state"][i]["exp_avg"], moments["exp_avg"], rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(
            two["optimizer"]["state"][i]["exp_avg_sq"], moments["exp_avg_sq"], rtol=1e-3, atol=1e-8
        )
    # evaluated from codes encoded half on each process: the mAP one process finds
    maps = [[e["map"] for e in run["history"]["evals"]] for run in (two, one)]
    assert len(maps[0]) == 1 and maps[0] == pytest.approx(maps[1], rel=0, abs=1e-9)
    # the state was written with every process's codes: all its rows, as one process wrote them
    for name in STATE[method]:
        assert (two["method_state"][name].abs().sum(1) > 0).all(), name
        torch.testing.assert_close(two["method_state"][name], one["method_state"][name], rtol=0, atol=ATOL, msg=name)


def test_a_killed_two_process_run_resumes_to_the_same_final_weights(runs, tmp_path):
    killed, straight = tmp_path / "killed", runs / "straight"
    checkpoint = killed / "bits16" / "checkpoint.pt"
    command = _torchrun("-m", "hhlib", *_flags(killed))  # the README's command
    process = subprocess.Popen(command, env=ENV, cwd=REPO, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not checkpoint.is_file():
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):  # a run that already failed has no group left to kill
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    assert process.wait() == -signal.SIGKILL, "the two-process run ended on its own before it was killed"
    assert checkpoint.is_file(), "the run ended before writing its first checkpoint"
    assert load_checkpoint(checkpoint)["epoch"] < 3 and not (killed / "bits16" / "metrics.json").exists()
    subprocess.run(command, env=ENV, cwd=REPO, check=True, timeout=300)
    resumed, uninterrupted = load_checkpoint(checkpoint), load_checkpoint(straight / "bits16" / "checkpoint.pt")
    assert resumed["epoch"] == uninterrupted["epoch"] == 3
    for name, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    assert torch.equal(resumed["method_state"]["U"], uninterrupted["method_state"]["U"])
    assert [e["loss"] for e in resumed["history"]["epochs"]] == [e["loss"] for e in uninterrupted["history"]["epochs"]]
    assert resumed["history"]["best_map"] == uninterrupted["history"]["best_map"]
    assert sorted(p.name for p in (straight / "bits16").iterdir()) == ["checkpoint.pt", "metrics.json"]


def test_two_nodes_train_as_the_two_processes_of_one(runs, tmp_path):
    """The README's two-node command on one machine: two torchrun agents of one process each, static rendezvous."""
    with socket.socket() as probe:  # a free port for node 0's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = tmp_path / "nodes"
    launch = [str(TORCHRUN), "--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
    agents = [
        subprocess.Popen([*launch, f"--node_rank={node}", "-m", "hhlib", *_flags(nodes)], env=ENV, cwd=REPO)
        for node in (0, 1)
    ]
    assert [agent.wait(timeout=300) for agent in agents] == [0, 0]
    across, within = (load_checkpoint(run / "bits16" / "checkpoint.pt") for run in (nodes, runs / "straight"))
    for name, value in within["model"].items():
        assert torch.equal(across["model"][name], value), name
    assert across["history"]["best_map"] == within["history"]["best_map"]


def test_a_global_batch_that_does_not_split_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="batch_size 33 does not split evenly over 2 processes"):
        _check_split(400, 33)
    with pytest.raises(ValueError, match="ends with 1, fewer than the 2 processes"):
        _check_split(385, 64)
    _check_split(386, 64)  # a last batch of 2: one item each


def _check_gather() -> None:
    """In the worker: uneven rows gathered in rank order, the gradient reaching this process's rows only."""
    rank = distributed.rank()
    x = torch.full((3 - rank, 2), float(rank), requires_grad=True)  # rank 0: 3 rows, rank 1: 2
    (gathered,) = distributed.gather(x)
    assert gathered.tolist() == [[0.0, 0.0]] * 3 + [[1.0, 1.0]] * 2, gathered
    (gathered * torch.arange(1.0, 6.0)[:, None]).sum().backward()
    expected = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]] if rank == 0 else [[4.0, 4.0], [5.0, 5.0]]
    assert x.grad.tolist() == expected, x.grad


if __name__ == "__main__":  # a worker under torchrun
    from hhlib.__main__ import main

    distributed.setup(torch.device("cpu"))
    _check_gather()
    for method in STATE:
        _fit(Path(sys.argv[1]) / f"two-{method}", method)
    code = main(_flags(Path(sys.argv[1]) / "straight"))  # as torchrun -m hhlib train would; it leaves the group
    distributed.teardown()
    sys.exit(code)
