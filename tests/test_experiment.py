"""The experiment as data (lib/experiment.py): the configuration every shell script hands over,
its plan checked against the real script parsers, folder names, and the runner (lib/steps.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, import_script
from lib.errors import UserError
from lib.experiment import Config, Layout, Link, Step, flags_folder_name, plan
from lib.recorded_settings import check_settings
from lib.report import collect_curves
from lib.report_files import PLOTS_RECORD
from lib.steps import Timings, run_plan

AWKWARD = "my runs/it's \"here\""  # folders with a space, a single quote and a double quote
PAPER_SCRIPTS = sorted(p.name for p in (REPO_ROOT / "scripts").glob("*.sh") if p.name != "test.sh")
PARSERS = {script: import_script(script).get_args_parser()
           for script in ("train.py", "select.py", "evaluate.py", "scripts/make_a2d2_pools.py")}
# A stand-in for the interpreter: it records the command line and the environment it is given.
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
"""


def handed_over(script, tmp_path, **variables):
    """(Config, its plan) that scripts/<script> hands to scripts/run_experiment.py with PLAN=1."""
    fake = tmp_path / "fake python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHON": str(fake), "CALLS": str(calls), "PLAN": "1", **variables}
    run = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    [call] = [c for c in map(json.loads, calls.read_text().splitlines())
              if c["argv"][:1] == [str(REPO_ROOT / "scripts/run_experiment.py")]]
    options, train_flags = call["argv"][1:call["argv"].index("--")], call["argv"][call["argv"].index("--") + 1:]
    assert options == ["--plan"]
    config = Config.from_environ(call["env"], train_flags)
    return config, plan(config)


def commands(steps):
    return [step for step in steps if isinstance(step, Step)]


@pytest.mark.parametrize("script", PAPER_SCRIPTS)
def test_every_step_of_every_paper_script_parses(tmp_path, script):
    """Each paper script's settings, with its default methods, seeds and cycles: a wrong flag in any of
    them fails here rather than hours into a run."""
    config, steps = handed_over(script, tmp_path, DATA_ROOT=str(tmp_path / "data"), OUT=str(tmp_path / "out"))
    assert commands(steps)[-1].argv[:2] == ("--experiment", str(tmp_path / "out"))
    for step in commands(steps):
        args = PARSERS[step.script].parse_args(list(step.argv))
        if step.script == "train.py":
            assert args.seed in config.seeds and args.resume
    trained = {Path(step.output).parent for step in commands(steps) if step.script == "train.py"}
    evaluated = {Path(step.output).parent for step in commands(steps) if step.script == "evaluate.py" and step.output}
    assert trained == evaluated  # every model is evaluated
    cycles = {method: {Path(s.output).parent.name for s in commands(steps)
                       if s.script == "select.py" and f"/{method}/seed" in s.output} for method in config.methods}
    assert all(folders == {f"cycle{c}" for c in range(1, config.cycles + 1)} for folders in cycles.values())


def value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.mark.parametrize(("script", "methods"), [
    ("camvid_meal.sh", "meal"),
    ("camvid_s4al.sh", "entropy-ssl"),
    ("cityscapes_10_10.sh", "bald entropy-ssl uniform5-entropy"),
    ("a2d2_pool0f_10_10.sh", "entropy"),
    ("a2d2_poolaug_10_10.sh", "entropy"),
    ("demo.sh", "entropy"),
])
def test_paper_scripts_pass_each_path_as_one_word(tmp_path, script, methods):
    """OUT, DATA_ROOT, PRETRAINED, POOLS and the paths made of them (the teacher, MEAL's UMAP cache) reach
    the steps whole, and every output lies in OUT (or POOLS)."""
    base = tmp_path / AWKWARD
    base.mkdir(parents=True)
    paths = {name: str(base / f"{name.lower()} 'x' \"y\"") for name in ("OUT", "DATA_ROOT", "PRETRAINED", "POOLS")}
    _, steps = handed_over(script, tmp_path, **paths, METHODS=methods, SEEDS="0", CYCLES="1")
    out, data, pretrained, pools = (paths[name] for name in ("OUT", "DATA_ROOT", "PRETRAINED", "POOLS"))
    for step in commands(steps):
        argv = step.argv
        for flag in ("--index", "--checkpoint", "--teacher", "--umap-cache", "--scores-out"):
            assert value(argv, flag) is None or value(argv, flag).startswith(out + "/"), (flag, argv)
        if step.script == "scripts/make_a2d2_pools.py":
            assert value(argv, "--data-root") == data and value(argv, "--out") == pools
        elif value(argv, "--experiment"):
            assert value(argv, "--experiment") == out
        else:
            assert value(argv, "--out").startswith(out + "/"), argv
            expected_root = {"a2d2_poolaug_10_10.sh": f"{pools}/pool_aug"}.get(script, data)
            if step.script == "evaluate.py" and script == "a2d2_poolaug_10_10.sh":
                expected_root = data  # evaluated on A2D2's validation sequence
            assert value(argv, "--data-root") == expected_root, argv
            if script == "a2d2_pool0f_10_10.sh" and step.script != "evaluate.py":
                assert value(argv, "--pool") == f"{pools}/pool_0f.json", argv
            if step.script == "train.py" and script != "demo.sh":
                assert value(argv, "--pretrained") == pretrained, argv

    def cycle1(script_name, method):
        [argv] = [s.argv for s in commands(steps)
                  if s.script == script_name and value(s.argv, "--out").startswith(f"{out}/{method}/seed0/cycle1/")]
        return argv

    if script == "camvid_meal.sh":
        assert value(cycle1("select.py", "meal"), "--umap-cache") == f"{out}/_initial/seed0/umap.pt"
        assert value(cycle1("select.py", "meal"), "--pretrained") == pretrained
    if script == "camvid_s4al.sh":  # self-training: the teacher is the previous cycle's model
        assert value(cycle1("train.py", "entropy-ssl"), "--teacher") == f"{out}/entropy-ssl/seed0/cycle0/model.pt"
    if script == "cityscapes_10_10.sh":
        assert value(cycle1("select.py", "uniform5-entropy"), "--prefilter") == "uniform@5"
        assert "--mc-dropout" in cycle1("train.py", "bald") and "--mc-dropout" not in cycle1("train.py", "entropy-ssl")
        assert value(cycle1("train.py", "entropy-ssl"), "--ssl") == "s4gan"
        assert f"{out}/_initial/seed0/mc-dropout/model.pt" in [s.output for s in commands(steps)]


def tiny_config(out, **fields):
    return Config(**{"dataset": "synthetic", "data_root": "data", "out": str(out), "methods": ("entropy",),
                     "seeds": (0,), "cycles": 2, **fields})


def test_the_initial_draw_is_shared_and_variants_get_their_own_model(tmp_path):
    config = tiny_config(tmp_path, methods=("entropy", "random", "bald", "bald-ssl"), ssl="s4gan",
                         ssl_args=("--disc-lr", "2.5e-5"))
    steps = plan(config)
    initial_selections = [s for s in commands(steps) if s.script == "select.py" and "/_initial/" in s.output]
    assert len(initial_selections) == 1  # one draw per seed, whatever the methods
    links = {Path(link.target).relative_to(tmp_path).as_posix(): Path(link.source).relative_to(tmp_path).as_posix()
             for link in steps if isinstance(link, Link) and link.names == ("index.json", "model.pt", "metrics.json")}
    assert links == {"entropy/seed0/cycle0": "_initial/seed0", "random/seed0/cycle0": "_initial/seed0",
                     "bald/seed0/cycle0": "_initial/seed0/mc-dropout",
                     "bald-ssl/seed0/cycle0": "_initial/seed0/ssl=s4gan,disc-lr=2.5e-5,mc-dropout"}


def test_flags_folder_names_are_distinct_readable_and_safe():
    assert flags_folder_name(("--mc-dropout",)) == "mc-dropout"
    assert flags_folder_name(("--disc-lr", "2.5e-5")) != flags_folder_name(("--disc-lr", "2.5e5"))
    assert flags_folder_name(("--pseudo-dir", "a/b")) == "pseudo-dir=a%2Fb"  # one folder, not two
    long = flags_folder_name(("--reco-weight", "1" * 300))
    assert len(long) <= 120 and long != flags_folder_name(("--reco-weight", "1" * 299))


def test_word_lists_split_as_the_shell_does():
    env = {"DATASET": "voc", "DATA_ROOT": "d", "OUT": "o", "TRAIN_ARGS": "--epochs 3  --teacher 'a b.pt'",
           "SEEDS": "1 2", "STEP": ""}
    config = Config.from_environ(env, ["--pretrained", "my weights.pth"])
    assert config.train_args == ("--pretrained", "my weights.pth", "--epochs", "3", "--teacher", "a b.pt")
    assert config.seeds == (1, 2) and config.step is None  # STEP= leaves the budget to select.py


@pytest.mark.parametrize(("variables", "message"), [
    ({"DATASET": ""}, "set DATASET"),
    ({"CYCLES": "two"}, "CYCLES='two': 'two' is not a whole number"),
    ({"SEEDS": "0 -1"}, "SEEDS='0 -1': '-1' is not a whole number"),
    ({"TRAIN_ARGS": "--teacher 'a"}, "TRAIN_ARGS=\"--teacher 'a\": No closing quotation"),
])
def test_a_bad_configuration_is_one_line_naming_the_variable(variables, message):
    env = {"DATASET": "voc", "DATA_ROOT": "d", "OUT": "o", **variables}
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(") + "$"):
        Config.from_environ(env)


def test_an_unknown_method_is_refused_before_any_step():
    with pytest.raises(UserError, match=r"^METHODS: 'entropy-sl' is not a method \(auto, bald, coreset, .*-ssl\)$"):
        plan(tiny_config("o", methods=("entropy", "entropy-sl")))


def test_an_unknown_ssl_mode_is_refused_when_an_ssl_method_needs_it():
    plan(tiny_config("o", ssl="fixmatch"))  # no -ssl method: SSL is not read
    with pytest.raises(UserError, match=r"^SSL: 'fixmatch' is not a mode of train.py --ssl \(none, selftrain, s4gan\)"):
        plan(tiny_config("o", methods=("entropy-ssl",), ssl="fixmatch"))


def test_layout_is_what_the_report_reads(tmp_path):
    layout = Layout(tmp_path)
    for cycle, (fraction, miou) in enumerate([(0.1, 0.3), (0.2, 0.4)]):
        layout.cycle("entropy", 3, cycle).mkdir(parents=True)
        (layout.cycle("entropy", 3, cycle) / "metrics.json").write_text(
            json.dumps({"labeled_fraction": fraction, "miou": miou}))
    layout.initial(3).mkdir(parents=True)  # shared state, not a curve
    (layout.initial(3) / "metrics.json").write_text(json.dumps({"labeled_fraction": 0.1, "miou": 0.3}))
    assert collect_curves(tmp_path) == {"entropy": {3: [(0, 10.0, 30.0), (1, 20.0, 40.0)]}}


def test_where_a_file_belongs_in_words(tmp_path):
    layout = Layout(tmp_path)
    assert layout.where(layout.cycle("entropy", 2, 3) / "model.pt", 4) == "seed 2, entropy, cycle 3 of 4"
    assert layout.where(layout.initial(0, "mc-dropout") / "model.pt", 4) == "seed 0, the initial cycle (mc-dropout)"
    assert layout.where(layout.initial(0) / "index.json", 4) == "seed 0, the initial cycle"
    assert layout.where(layout.full(1) / "metrics.json", 4) == "seed 1, full supervision"


def test_the_time_left_counts_each_kind_of_step_left_at_its_mean():
    steps = [Step("train.py", (), "a"), Step("evaluate.py", (), "b"), Step("train.py", (), "c")]
    timings = Timings({step.output: step.script for step in steps})
    assert timings.progress(steps[0]) == "[1/3]"
    timings.record(steps[0], 100)
    assert timings.progress(steps[1], lambda step: step.output) == "[2/3] b"  # evaluate.py not timed yet
    timings.record(steps[1], 20)
    assert timings.progress(steps[2]) == "[3/3]; about 1:40 left"
    timings.record(steps[2], 300)
    assert timings.left() == 0


def test_steps_whose_outputs_exist_or_are_not_needed_are_skipped(tmp_path, capsys):
    """A folder of an initial model named otherwise by an earlier version is not retrained once the method's
    cycle 0 exists: the step only fed it."""
    done = tmp_path / "done.json"
    done.write_text("{}")
    missing_script = "no such script.py"  # running either step would fail
    steps = [Step(missing_script, (), str(done)), Step(missing_script, (), str(tmp_path / "x"), (str(done),)),
             Link(str(tmp_path / "nowhere"), str(tmp_path / "target"), ("a",), (str(done),))]
    assert run_plan(steps) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"skip {missing_script}: {done} exists",
        f"skip {missing_script}: {tmp_path / 'x'} is not needed, {tmp_path} is done"]
    assert not (tmp_path / "target").exists()


def test_an_experiment_of_the_shell_loop_keeps_its_initial_models(tmp_path, capsys):
    """The shell loop named bald's initial folder mcdropout: its finished model is linked, not trained again."""
    config = tiny_config(tmp_path, methods=("bald",), cycles=0)
    legacy = config.layout.initial(0, "mcdropout")
    legacy.mkdir(parents=True)
    for name in ("index.json", "model.pt", "metrics.json"):
        (legacy / name).write_text(name)
    (legacy.parent / "index.json").write_text("index.json")
    *steps, summary = plan(config)
    assert run_plan(steps) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("run ")]
    for name in ("model.pt", "metrics.json"):
        assert os.path.samefile(config.layout.cycle("bald", 0, 0) / name, legacy / name)


def test_a_step_in_this_process_names_its_script_in_usage_errors(capfd):
    assert run_plan([Step("train.py", ("--no-such-flag",), None)]) == 2
    assert capfd.readouterr().err.endswith("(see train.py --help)\n")


def test_a_missing_file_to_share_is_one_error_line(tmp_path):
    with pytest.raises(UserError, match=r"^.*/model.pt: missing, a step of the experiment was to write it$"):
        run_plan([Link(str(tmp_path / "a"), str(tmp_path / "b"), ("model.pt",))])
    assert [p.name for p in (tmp_path / "b").iterdir()] == []


LEAKY_SCRIPT = """
import torch
from torch.utils.data import DataLoader
from lib.errors import UserError

def main(argv):
    print(torch.randint(1 << 30, ()).item(), flush=True)  # unseeded: not what an earlier step seeded
    torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = True
    torch.use_deterministic_algorithms(True)
    torch.set_grad_enabled(False)
    handle = open(__file__)  # a file left open
    batches = iter(DataLoader(range(8), num_workers=2))  # workers left running
    next(batches)
    raise UserError(f"{argv[0]} failed")
"""


def test_a_step_in_this_process_starts_fresh_and_leaves_nothing_behind(tmp_path, capfd):
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY_SCRIPT)
    torch.manual_seed(123)  # whatever an earlier step did
    replayed = f"{torch.randint(1 << 30, ()).item()}\n"
    torch.manual_seed(123)
    threads, fds = torch.get_num_threads(), len(os.listdir("/dev/fd"))
    assert run_plan([Step(str(script), ("leaky.py",), None)]) == 2
    out, err = capfd.readouterr()
    assert out != replayed and err == "error: leaky.py failed\n"
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()
    assert not torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    import multiprocessing

    assert multiprocessing.active_children() == [] and len(os.listdir("/dev/fd")) == fds


def run_experiment(out, pool, *flags):
    env = {**os.environ, "DATASET": "synthetic", "DATA_ROOT": str(pool), "OUT": str(out), "SEEDS": "0",
           "METHODS": "entropy bald coreset", "INITIAL": "4", "STEP": "2", "CYCLES": "1",
           "TRAIN_ARGS": "--arch tiny --epochs 2 --batch-size 2 --crop 32x48 --workers 0 --device cpu",
           "SELECT_ARGS": "--workers 0 --device cpu", "EVAL_ARGS": "--workers 1 --device cpu"}
    run = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/run_experiment.py"), *flags], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


@pytest.mark.slow
def test_one_process_gives_the_results_of_separate_processes(synthetic_pool, tmp_path):
    shared, separate = tmp_path / "shared", tmp_path / "separate"
    run_experiment(shared, synthetic_pool)
    run_experiment(separate, synthetic_pool, "--separate-processes")
    files = sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(separate) for p in separate.rglob("*") if p.is_file())
    assert len([f for f in files if f.name == "index.json"]) == 8  # _initial, mc-dropout, 3 methods x 2 cycles
    for name in files:
        ours, theirs = shared / name, separate / name
        if name.suffix == ".pt":
            a, b = torch.load(ours, weights_only=True), torch.load(theirs, weights_only=True)
            assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
        elif name.name == "metrics.json":  # it names its checkpoint by absolute path
            a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
            assert a.pop("checkpoint") != b.pop("checkpoint") and a == b, name
        elif name.name.startswith("summary@") and name.suffix == ".json":
            assert json.loads(ours.read_text())["methods"] == json.loads(theirs.read_text())["methods"]
        elif name.suffix != ".png" and name.name != PLOTS_RECORD:  # the curves' title is the folder's name
            assert ours.read_bytes() == theirs.read_bytes(), name


def test_a_rerun_with_other_settings_stops_unless_accepted(tmp_path, capsys):
    config = tiny_config(tmp_path, train_args=("--epochs", "10", "--workers", "2"))
    check_settings(config, accept_changes=False)  # the first run records them
    recorded = (tmp_path / "experiment.json").read_text()
    same = tiny_config(tmp_path, train_args=("--epochs", "10", "--workers=0", "--threads", "1", "--device", "cpu"),
                       seeds=(0, 1), methods=("entropy", "bald"), cycles=5, budget="30")  # runtime flags, extensions, the table
    check_settings(same, accept_changes=False)
    longer = tiny_config(tmp_path, train_args=("--epochs", "20"), initial="5%")
    with pytest.raises(UserError, match=r"this experiment was run with other settings \(INITIAL was '10%', is "
                                        r"'5%'; TRAIN_ARGS was '--epochs 10', is '--epochs 20'\); use another OUT"):
        check_settings(longer, accept_changes=False)
    assert (tmp_path / "experiment.json").read_text() == recorded
    check_settings(longer, accept_changes=True)
    assert "settings changed (INITIAL, TRAIN_ARGS), accepted" in capsys.readouterr().out
    check_settings(longer, accept_changes=False)  # the accepted settings are the record now
