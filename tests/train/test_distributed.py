"""Several processes: eq. 3 over the gathered global batch, batches sliced per process, and
two real processes (torchrun, gloo on CPU) against one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from geckokit.train.batching import device_slices, plan_batches  # noqa: E402
from geckokit.train.distributed import gather_batch, world  # noqa: E402
from geckokit.train.losses import gecko_loss, gecko_loss_slice, matryoshka_loss  # noqa: E402
from geckokit.train.trainer import TrainConfig, _per_device_batch, processes  # noqa: E402
from tests.conftest import ROOT, free_port  # noqa: E402

HERE = Path(__file__).resolve().parent


def _batch(n: int = 6, dim: int = 8) -> tuple[object, object, object]:
    g = torch.Generator().manual_seed(3)
    return tuple(torch.randn(n, dim, generator=g) for _ in range(3))  # type: ignore[return-value]


@pytest.mark.parametrize("same_tower", [True, False])
@pytest.mark.parametrize("world_size", [2, 3])
def test_slices_mean_is_the_whole_batch_loss(same_tower: bool, world_size: int) -> None:
    q, pos, neg = _batch()
    mask = torch.tensor([True, False, True, True, False, True])
    whole = gecko_loss(q, pos, neg, same_tower=same_tower, neg_mask=mask)
    b = 6 // world_size
    parts = [
        gecko_loss_slice(
            q[r * b : (r + 1) * b],
            pos[r * b : (r + 1) * b],
            neg[r * b : (r + 1) * b],
            batch_q=q,
            batch_pos=pos,
            offset=r * b,  # rank r's targets: columns r * b ... r * b + b - 1
            same_tower=same_tower,
            neg_mask=mask[r * b : (r + 1) * b],
        )
        for r in range(world_size)
    ]
    assert torch.stack(parts).mean().item() == pytest.approx(whole.item(), rel=1e-6)


def test_a_slice_scores_each_row_as_the_whole_batch_does() -> None:
    q, pos, neg = _batch()
    whole = gecko_loss(q, pos, neg, reduction="none")  # (6,)
    second = gecko_loss_slice(
        q[3:], pos[3:], neg[3:], batch_q=q, batch_pos=pos, offset=3, reduction="none"
    )
    assert torch.allclose(second, whole[3:], atol=1e-6)


def test_a_wrong_offset_is_another_loss() -> None:
    # the label offset matters: rank 1's queries scored against rank 0's positives differ
    q, pos, neg = _batch()
    right = gecko_loss_slice(q[3:], pos[3:], neg[3:], batch_q=q, batch_pos=pos, offset=3)
    wrong = gecko_loss_slice(q[3:], pos[3:], neg[3:], batch_q=q, batch_pos=pos, offset=0)
    assert abs(right.item() - wrong.item()) > 0.1


def test_slice_loss_checks_its_offset_and_batch() -> None:
    q, pos, _ = _batch()
    with pytest.raises(ValueError, match="outside a batch of 6"):
        gecko_loss_slice(q[3:], pos[3:], batch_q=q, batch_pos=pos, offset=4)
    with pytest.raises(ValueError, match="must both be"):
        gecko_loss_slice(q[3:], pos[3:], batch_q=q, batch_pos=pos[:, :4], offset=3)


def test_on_one_process_gathering_changes_nothing() -> None:
    q, pos, neg = _batch()
    assert world() == (0, 1)
    batch = gather_batch(q, pos)
    assert batch.q is q and batch.pos is pos and batch.offset == 0
    plain = matryoshka_loss(q, pos, neg, dims=[8, 4])
    gathered = matryoshka_loss(q, pos, neg, dims=[8, 4], gather_across_devices=True)
    assert gathered.item() == pytest.approx(plain.item())


def test_device_slices_cut_each_global_batch_in_order() -> None:
    assert device_slices([[0, 1, 2, 3], [4, 5, 6, 7]], world_size=2) == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
    ]
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        device_slices([[0, 1, 2]], world_size=2)
    with pytest.raises(ValueError, match="at least 1"):
        device_slices([[0, 1]], world_size=0)


def test_each_process_gets_its_slice_of_a_one_source_global_batch() -> None:
    """The sliced plan through accelerate's sharding (what the trainer's loader does under
    torchrun): at every step, both processes draw from one source, disjoint halves."""
    from accelerate.data_loader import BatchSamplerShard

    sources = ["nli"] * 12 + ["fret"] * 12 + ["qa"] * 8
    texts = [(f"q{i}", f"p{i}", f"n{i}") for i in range(len(sources))]
    plan = plan_batches(sources, texts, batch_size=4, seed=5)
    sliced = device_slices(plan, world_size=2)
    per_rank = [list(BatchSamplerShard(sliced, num_processes=2, process_index=r)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == len(plan)
    for step, (a, b) in enumerate(zip(*per_rank, strict=True)):
        assert sorted(a + b) == sorted(plan[step])  # the global batch, split between them
        assert len({sources[i] for i in a + b}) == 1  # one source per global batch
    # every rank plans the same batches from the shared seed
    assert plan_batches(sources, texts, batch_size=4, seed=5) == plan


def test_batch_size_is_the_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _per_device_batch(TrainConfig(batch_size=8), 2) == 4
    assert _per_device_batch(TrainConfig(batch_size=8), 1) == 8
    with pytest.raises(ValueError, match="multiple of 3"):
        _per_device_batch(TrainConfig(batch_size=8), 3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert processes() == 2
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="whole number"):
        processes()


def test_gathering_off_on_several_processes_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        _per_device_batch(TrainConfig(batch_size=8, gather_across_devices=False), 2)
    assert "own slice only" in caplog.text


def _run(args: list[str], out: Path, script: str = "ddp_step.py", *extra: str) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT)) if p),
    }
    done = subprocess.run(
        [sys.executable, *args, str(HERE / script), *extra, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _torchrun(processes: int) -> list[str]:
    return [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
    ]


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_global_batch(tmp_path: Path) -> None:
    """MiniLM, one SGD step of eq. 3 (Matryoshka 384 and 128) on 8 rows: alone, and as two
    torchrun processes (gloo, CPU) of 4 rows each that gather the global batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _run([], one)
    _run(_torchrun(2), two)
    alone = torch.load(one / "rank0.pt")
    ranks = [torch.load(two / f"rank{r}.pt") for r in range(2)]
    # each process's loss is over its own queries; their mean is the one-process loss
    assert ranks[0]["loss"] != pytest.approx(ranks[1]["loss"], rel=1e-3)
    mean = (ranks[0]["loss"] + ranks[1]["loss"]) / 2
    assert mean == pytest.approx(alone["loss"], rel=1e-5, abs=1e-8)
    # the gradients (averaged over processes) agree: the updated weights match
    for name, weight in alone["weights"].items():
        for rank in ranks:
            assert torch.allclose(rank["weights"][name], weight, atol=1e-6), name


@pytest.mark.slow
def test_the_trainer_runs_under_torchrun(shared_data: Path, tmp_path: Path) -> None:
    """`train` as two torchrun processes on CPU (gloo) for 3 steps of a global batch of 8:
    the trainer runs them as one distributed job (each process a slice of every batch), the
    processes end with the same weights, and rank 0 writes the run."""
    from geckokit.mixture.build import build_mixture

    nli = tmp_path / "snli" / "test.jsonl"
    nli.parent.mkdir()
    lines = (shared_data / "training_pairs/snli_esnli/test.jsonl").read_text().splitlines()
    nli.write_text("\n".join(lines[:64]) + "\n")
    mixture = tmp_path / "mix"
    build_mixture(mixture, nli=[nli])
    out = tmp_path / "out"
    out.mkdir()
    _run(_torchrun(2), out, "ddp_train.py", str(mixture))
    manifest = json.loads((out / "run" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["steps"] == 3
    assert len(manifest["loss_curve"]) == 3
    weights = [torch.load(out / f"weights{r}.pt") for r in range(2)]
    for name, weight in weights[0].items():
        assert torch.equal(weight, weights[1][name]), name  # gradients were averaged
    assert (out / "run" / "model" / "geckokit.json").is_file()
