"""train.py, select.py and evaluate.py under torchrun: 2 CPU processes with the gloo backend, against one process."""
import contextlib
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, fail, import_script
from lib import distributed
from lib.acquire import context as acquire_context
from lib.acquire.context import ItemReader
from lib.data import open_dataset
from lib.distributed import SINGLE, World, launched_world, rank_share, shard_batches
from lib.engine import EpochBatches, epoch_order
from lib.errors import UserError
from lib.experiment import Config, Step, plan
from lib.models import build_model
from lib.steps import run_plan
from lib.units import Unit
from torchrun_driver import Killed, stopping_after

DRIVER = REPO_ROOT / "tests" / "torchrun_driver.py"


def test_a_plain_python_is_a_world_of_one():
    assert launched_world({}) == SINGLE
    assert launched_world({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == World(1, 2, 1)


@pytest.mark.parametrize("fails", [False, True])
def test_a_rank_leaves_its_group_after_a_success_only_and_gets_its_stdout_back(monkeypatch, capsys, fails):
    """Rank 1 prints nothing; a failed one keeps its group (destroying it could hang while others wait in NCCL)."""
    calls = []
    for name in ("init_process_group", "barrier", "destroy_process_group"):
        monkeypatch.setattr(distributed.dist, name, lambda *args, name=name, **kwargs: calls.append(name))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with contextlib.suppress(UserError):
        with distributed.joined("cpu") as (world, _):
            print("progress of rank 1")
            if fails:
                raise UserError("a bad image")
    assert world == World(1, 2) and capsys.readouterr().out == ""
    print("after")
    assert capsys.readouterr().out == "after\n"
    assert calls == (["init_process_group"] if fails else ["init_process_group", "barrier", "destroy_process_group"])


def test_the_ranks_shares_of_the_batches_are_the_single_process_batches_in_turn():
    ids = [f"img{i}" for i in range(11)]
    shards = [shard_batches(ids, 3, World(rank, 2)) for rank in range(2)]
    assert shards == [ids[0:3] + ids[6:9], ids[3:6] + ids[9:11]]
    assert shard_batches(ids, 3, SINGLE) == ids


def test_a_training_batch_is_split_into_contiguous_shares_that_differ_by_at_most_one():
    batch = list(range(7))
    shares = [rank_share(batch, World(rank, 3)) for rank in range(3)]
    assert sum(shares, []) == batch
    assert sorted(map(len, shares)) == [2, 2, 3]


def test_every_step_of_the_ranks_together_is_the_single_process_step():
    def order_of(epoch):
        return epoch_order(5, epoch, 10, 4)

    single, *ranks = (EpochBatches(order_of, 4, world) for world in (SINGLE, World(0, 2), World(1, 2)))
    for batches in (single, *ranks):
        batches.epoch = 3
    assert [first + second for first, second in zip(*ranks)] == list(single)
    assert [index for batch in single for epoch, index in batch] == epoch_order(5, 3, 10, 4)
    assert {epoch for batch in single for epoch, _ in batch} == {3}


def test_a_process_without_a_batch_of_its_own_gets_every_feature_row(synthetic_pool, monkeypatch):
    """Rank 1 of 2 when the pool is one batch (MEAL's map of a small pool, coreset's features): it embeds nothing
    and takes rank 0's rows, here those of a single process."""
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": 3, "output_stride": 16, "mc_dropout": False})
    preprocess = {"mean": [0.5] * 3, "std": [0.25] * 3}
    single = ItemReader(dataset, Unit("patch", (2, 2)), torch.device("cpu"), batch_size=len(dataset.ids))
    rank1 = dataclasses.replace(single, world=World(1, 2))
    ids, features = single.embed_images(model, preprocess, "aspp", dataset.ids)  # [N, d]
    monkeypatch.setattr(acquire_context, "gather_objects", lambda value, world: [(ids, features), value])
    assert rank1.embed_images(model, preprocess, "aspp", dataset.ids)[0] == ids
    assert torch.equal(rank1.embed_images(model, preprocess, "aspp", dataset.ids)[1], features)

    wanted = ids[5:] + ids[:5]  # labeled rows first, as FeaturesInput asks
    rows = single.features(model, preprocess, "aspp", wanted)  # [N, d]
    monkeypatch.setattr(acquire_context, "gather_objects", lambda value, world: [(list(range(len(ids))), rows), value])
    assert torch.equal(rank1.features(model, preprocess, "aspp", wanted), rows)


def _torchrun(steps, folder):
    """Run the driver's `steps` under torchrun with 2 gloo processes; what they printed."""
    steps_file = folder / "steps.json"
    steps_file.write_text(json.dumps(steps))
    with subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(DRIVER), str(steps_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=REPO_ROOT, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}) as torchrun:
        try:
            stdout, stderr = torchrun.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            # SIGTERM, which torchrun passes on to its workers: subprocess.run's SIGKILL on a timeout would leave
            # them running forever, each in a session of its own.
            torchrun.terminate()
            stdout, stderr = torchrun.communicate()
    assert torchrun.returncode == 0, (stdout + stderr)[-3000:]
    return stdout


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.slow
def test_torchrun_selects_and_evaluates_as_one_process_and_trains_deterministically(synthetic_pool, tmp_path):
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    runtime = ["--workers", "0", "--device", "cpu"]
    index = tmp_path / "index.json"
    import_script("select.py").main([*data, "--method", "random", "--budget", "6", "--out", str(index)])

    def train(out, *more):
        return [*data, "--index", str(index), "--out", str(tmp_path / out), "--arch", "tiny", "--mc-dropout",
                "--epochs", "3", "-b", "4", "--crop", "32x48", *runtime, *more]

    def select(method, out):
        # coreset in one batch of the 12 images: the second process has none of its own
        batch = "16" if method == "coreset" else "2"
        return [*data, "--index", str(index), "--checkpoint", str(tmp_path / "single.pt"), "--method", method,
                "--budget", "3", "-b", batch, *runtime, "--out", str(tmp_path / f"{out}.json"),
                "--scores-out", str(tmp_path / f"{out}.scores.json")]

    def evaluate(out):
        return ["--checkpoint", str(tmp_path / "single.pt"), "--data-root", str(synthetic_pool), "--split", "val",
                "-b", "1", *runtime, "--out", str(tmp_path / f"{out}.json")]

    import_script("train.py").main(train("single.pt"))
    methods = ("entropy", "coreset", "bald")
    for method in methods:
        import_script("select.py").main(select(method, f"single-{method}"))
    import_script("evaluate.py").main(evaluate("single-metrics"))

    printed = _torchrun([
        {"script": "train.py", "argv": train("ddp.pt")},
        {"script": "train.py", "argv": train("ddp-again.pt")},
        {"script": "train.py", "argv": train("killed.pt", "--resume"), "stop_after_epoch": 1},
        *({"script": "select.py", "argv": select(method, f"ddp-{method}")} for method in methods),
        {"script": "evaluate.py", "argv": evaluate("ddp-metrics")},
    ], tmp_path)
    assert (tmp_path / "killed.pt.resume").exists() and not (tmp_path / "killed.pt").exists()
    _torchrun([{"script": "train.py", "argv": train("killed.pt", "--resume")}], tmp_path)

    for method in methods:  # the index and every score, byte for byte
        for suffix in (".json", ".scores.json"):
            assert (tmp_path / f"ddp-{method}{suffix}").read_bytes() == \
                (tmp_path / f"single-{method}{suffix}").read_bytes(), (method, suffix)
    assert (tmp_path / "ddp-metrics.json").read_bytes() == (tmp_path / "single-metrics.json").read_bytes()

    ddp, again, resumed = (_weights(tmp_path / name) for name in ("ddp.pt", "ddp-again.pt", "killed.pt"))
    assert all(torch.equal(ddp[key], again[key]) and torch.equal(ddp[key], resumed[key]) for key in ddp)
    single = _weights(tmp_path / "single.pt")
    assert any(not torch.equal(ddp[key], single[key]) for key in ddp)  # BatchNorm saw halves of each batch
    checkpoint = torch.load(tmp_path / "ddp.pt", map_location="cpu", weights_only=False)
    assert checkpoint["train_args"]["processes"] == 2
    assert printed.count("training tiny on 6 labeled images") == 3  # rank 0's lines only
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_resume_file_of_two_processes_is_refused_by_one(trained_tiny, synthetic_pool, tmp_path, capsys):
    train = import_script("train.py")
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(trained_tiny / "index.json"),
            "--out", str(tmp_path / "model.pt"), "--arch", "tiny", "--epochs", "2", "-b", "2", "--crop", "32x48",
            "--workers", "0", "--device", "cpu", "--resume"]
    train.save_epoch = stopping_after(train.save_epoch, 1)
    with pytest.raises(Killed):
        train.main(argv)
    resume_file = tmp_path / "model.pt.resume"
    state = torch.load(resume_file, map_location="cpu", weights_only=False)
    state["train_args"]["processes"] = 2  # as torchrun --nproc-per-node 2 records it
    torch.save(state, resume_file)
    err = fail(import_script("train.py"), argv, capsys)
    assert str(resume_file) in err and "processes" in err


@pytest.mark.parametrize("flags, culprit", [(["--ssl", "selftrain"], "--ssl selftrain"),
                                            (["--contrastive", "reco"], "--contrastive reco"),
                                            (["-b", "1"], "-b 1")])
def test_what_does_not_run_under_torchrun_is_refused_before_any_work(flags, culprit):
    args = import_script("train.py").get_args_parser().parse_args(
        ["--dataset", "synthetic", "--data-root", "x", "--index", "i.json", "--out", "m.pt", *flags])
    with pytest.raises(UserError, match=culprit):
        import_script("train.py").check_world(args, World(0, 2), torch.device("cpu"))


def test_sync_bn_is_refused_without_torchrun(trained_tiny, synthetic_pool, tmp_path, capsys):
    err = fail(import_script("train.py"), ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index",
                                           str(trained_tiny / "index.json"), "--out", str(tmp_path / "m.pt"),
                                           "--device", "cpu", "--sync-bn"], capsys)
    assert "--sync-bn" in err and "torchrun" in err


def test_evaluate_refuses_its_modes_without_a_model_under_torchrun(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    err = fail(import_script("evaluate.py"), ["--curve", str(tmp_path / "curve.json")], capsys)
    assert "torchrun" in err and "--checkpoint" in err


def test_nproc_runs_the_model_steps_of_an_experiment_under_torchrun():
    env = {"DATASET": "synthetic", "DATA_ROOT": "d", "OUT": "o", "METHODS": "entropy entropy-ssl", "NPROC": "4"}
    config = Config.from_environ(env)
    assert config.step_launcher == (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                    "4")
    steps = [step for step in plan(config) if isinstance(step, Step)]
    distributed = {(step.script, step.distributed) for step in steps if "--index" in step.argv
                   or "--checkpoint" in step.argv}
    assert distributed == {("train.py", True), ("train.py", False), ("select.py", True), ("evaluate.py", True)}
    assert all(("--ssl" in step.argv) != step.distributed for step in steps if step.script == "train.py")
    assert not any(step.distributed for step in steps if step.script == "evaluate.py" and "--experiment" in step.argv)
    custom = Config.from_environ({**env, "LAUNCHER": "torchrun --nproc-per-node 2 --master-port 29600"})
    assert custom.step_launcher == ("torchrun", "--nproc-per-node", "2", "--master-port", "29600")
    assert Config.from_environ({**env, "NPROC": "1"}).step_launcher == ()


def test_run_plan_starts_the_distributed_steps_with_the_launcher(tmp_path):
    record = tmp_path / "launched.txt"
    launcher = (sys.executable, "-c", f"import sys; open({str(record)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')")
    steps = [Step("train.py", ("--help",), str(tmp_path / "model.pt"), distributed=True),
             Step("select.py", ("--help",), None)]
    assert run_plan(steps, launcher=launcher) == 0
    assert record.read_text() == f"{REPO_ROOT / 'train.py'} --help\n"
