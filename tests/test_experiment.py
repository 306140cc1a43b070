"""The experiment as data (lib/experiment.py): the configuration every shell script hands over,
its plan checked against the real script parsers, folder names, and the runner (lib/steps.py)."""
import json
import os
import subprocess
import sys
from dataclasses import replace
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
        for flag in ("--index", "--checkpoint", "--teacher", "--init-head-from", "--umap-cache", "--scores-out"):
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

    def cycle1(script_name, method, folder="cycle1"):
        [argv] = [s.argv for s in commands(steps) if s.script == script_name
                  and os.path.dirname(value(s.argv, "--out")) == f"{out}/{method}/seed0/{folder}"]
        return argv

    if script == "camvid_meal.sh":
        assert value(cycle1("select.py", "meal"), "--umap-cache") == f"{out}/_initial/seed0/umap.pt"
        assert value(cycle1("select.py", "meal"), "--pretrained") == pretrained
    if script == "camvid_s4al.sh":  # self-training: the teacher is a supervised model of the cycle's labels
        teacher = f"{out}/entropy-ssl/seed0/cycle1/teacher"
        assert value(cycle1("train.py", "entropy-ssl"), "--teacher") == f"{teacher}/model.pt"
        assert value(cycle1("train.py", "entropy-ssl", "cycle1/teacher"), "--index") == f"{teacher}/index.json"
    if script == "cityscapes_10_10.sh":
        assert value(cycle1("select.py", "uniform5-entropy"), "--prefilter") == "uniform@5"
        assert "--mc-dropout" in cycle1("train.py", "bald") and "--mc-dropout" not in cycle1("train.py", "entropy-ssl")
        assert value(cycle1("train.py", "entropy-ssl"), "--ssl") == "s4gan"
        # WARM_START=1 (study.sh): the supervised methods' heads go on from the previous cycle, the -ssl ones not
        assert value(cycle1("train.py", "bald"), "--init-head-from") == f"{out}/bald/seed0/cycle0/model.pt"
        assert "--init-head-from" not in cycle1("train.py", "entropy-ssl")
        assert f"{out}/_initial/seed0/mc-dropout/model.pt" in [s.output for s in commands(steps)]


@pytest.mark.parametrize(("script", "supervised_steps", "student_steps", "last_epochs"), [
    ("camvid_s4al.sh", 50, 100, 150), ("cityscapes_s4al.sh", 100, 300, 200)])
def test_s4al_scripts_train_as_its_table_1(tmp_path, script, supervised_steps, student_steps, last_epochs):
    """S4AL+'s Table 1 and code (scripts/lib/s4al.sh): 10 % of the images whole to start; supervised models of 4
    crops a step, students of 2 + 4 on the teacher of their own cycle's labels; the last cycle longer; the
    teacher's logits averaged over 3 scales; the ReCo values of the code (teachers and students)."""
    config, steps = handed_over(script, tmp_path, DATA_ROOT=str(tmp_path / "data"), OUT=str(tmp_path / "out"),
                                SEEDS="0")
    assert (config.initial_method, config.initial, config.ssl_teacher) == ("random-images", "10%px", "supervised")
    out = tmp_path / "out"
    trained = {folder: PARSERS["train.py"].parse_args(list(step.argv))
               for folder, (_, step) in trained_by_folder(steps, out).items()}
    students = {folder for folder, args in trained.items() if args.ssl == "selftrain"}
    teachers = {Path(trained[folder].teacher).parent.relative_to(out).as_posix() for folder in students}
    assert teachers == {"_initial/seed0/" + flags_folder_name(config.teacher_args)} | {
        f"entropy-ssl/seed0/cycle{c}/teacher" for c in range(1, config.cycles + 1)}
    for folder, args in trained.items():
        last = f"/cycle{config.cycles}" in f"/{folder}/"
        assert args.epochs == (last_epochs if last else 100), folder
        if folder in students:
            assert (args.batch_size, args.unlabeled_batch_size, args.steps_per_epoch) == (2, 4, student_steps)
            assert args.pseudo_scales == (0.5, 1.0, 2.0) and args.pseudo_threshold == 0.7
        else:
            assert (args.batch_size, args.steps_per_epoch) == (4, supervised_steps), folder
        if folder in students | teachers:  # the teachers too: Table 1's "10% LD, Yes" row
            assert (args.contrastive, args.reco_temperature, args.reco_queries, args.reco_negatives,
                    args.reco_strong_threshold, args.reco_weight) == ("reco", 0.5, 128, 256, 0.95, 1.0), folder


def test_meal_trains_32_epochs_after_the_last_acquisition_step(tmp_path):
    """MEAL (scripts/lib/meal.sh): 25 epochs after each acquisition step, 32 after the last (meal.md l.197)."""
    config, steps = handed_over("camvid_meal.sh", tmp_path, DATA_ROOT=str(tmp_path / "data"),
                                OUT=str(tmp_path / "out"), SEEDS="0", METHODS="entropy")
    epochs = {folder: PARSERS["train.py"].parse_args(list(step.argv)).epochs
              for folder, (_, step) in trained_by_folder(steps, tmp_path / "out").items()}
    assert {folder for folder, n in epochs.items() if n == 32} == {f"entropy/seed0/cycle{config.cycles}"}
    assert set(epochs.values()) == {25, 32}


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


def test_cache_dir_reaches_every_step_that_reads_images(tmp_path):
    steps = [step for step in commands(plan(tiny_config(tmp_path, cache_dir="cache", full=True)))]
    # Random draws and the summary (evaluate.py --experiment) read no image.
    reading = [step for step in steps if "--checkpoint" in step.argv or step.script == "train.py"]
    assert {step.script for step in reading} == {"train.py", "evaluate.py", "select.py"}
    assert all(value(step.argv, "--cache-dir") == "cache" for step in reading)
    assert all("--cache-dir" not in step.argv for step in steps if step not in reading)


def trained_by_folder(steps, root):
    """{folder of a model, relative to root: (its train.py step's position in `steps`, the step)}."""
    return {Path(step.output).parent.relative_to(root).as_posix(): (i, step) for i, step in enumerate(steps)
            if isinstance(step, Step) and step.script == "train.py"}


def last_value(argv, flag):
    """The value of the last `flag` in argv, the one argparse keeps."""
    return argv[len(argv) - argv[::-1].index(flag)]


def test_supervised_teachers_train_before_every_model_the_initial_one_included(tmp_path):
    """SSL_TEACHER=supervised (S4AL+): a cycle's teacher is a supervised model of the cycle's own labels, trained
    first with TEACHER_ARGS; its student is the cycle's model, which selects the next items."""
    ssl = {"ssl": "selftrain", "ssl_args": ("--pseudo-threshold", "0.8"), "teacher_args": ("--contrastive", "reco")}
    config = tiny_config(tmp_path, methods=("entropy", "entropy-ssl"), ssl_teacher="supervised", **ssl)
    steps = plan(config)
    trained = trained_by_folder(steps, tmp_path)
    first_teacher = "_initial/seed0/contrastive=reco"
    first_student = "_initial/seed0/ssl=selftrain,pseudo-threshold=0.8,supervised-teacher"
    teachers = [first_teacher, "entropy-ssl/seed0/cycle1/teacher", "entropy-ssl/seed0/cycle2/teacher"]
    students = [first_student, "entropy-ssl/seed0/cycle1", "entropy-ssl/seed0/cycle2"]
    for teacher, student in zip(teachers, students):
        (before, teacher_step), (after, student_step) = trained[teacher], trained[student]
        assert before < after and value(student_step.argv, "--teacher") == str(tmp_path / teacher / "model.pt")
        assert value(teacher_step.argv, "--contrastive") == "reco" and "--ssl" not in teacher_step.argv
        assert value(teacher_step.argv, "--index") == str(tmp_path / teacher / "index.json")
        assert value(student_step.argv, "--ssl") == "selftrain" and "--contrastive" not in student_step.argv
    links = {(Path(link.source).relative_to(tmp_path).as_posix(), Path(link.target).relative_to(tmp_path).as_posix())
             for link in steps if isinstance(link, Link) and link.names == ("index.json",)}
    assert {("_initial/seed0", first_teacher), ("entropy-ssl/seed0/cycle1", teachers[1])} <= links
    # a teacher's steps are not needed once its student is done
    assert trained[teachers[1]][1].needed_for == tuple(str(tmp_path / students[1] / name)
                                                       for name in ("model.pt", "metrics.json"))
    selections = [s for s in commands(steps) if s.script == "select.py" and "/entropy-ssl/" in s.output]
    assert [value(s.argv, "--checkpoint") for s in selections] == [
        str(tmp_path / f"entropy-ssl/seed0/cycle{c}/model.pt") for c in (0, 1)]  # the students select
    evaluated = {Path(s.output).parent.relative_to(tmp_path).as_posix() for s in commands(steps)
                 if s.script == "evaluate.py" and s.output}
    assert set(teachers) <= evaluated
    # the other methods' plans are those of SSL_TEACHER=previous
    assert [s for s in steps if "/entropy/" in str(s)] == [s for s in plan(replace(config, ssl_teacher="previous",
                                                                                     teacher_args=()))
                                                            if "/entropy/" in str(s)]


def test_the_previous_cycles_model_teaches_by_default(tmp_path):
    config = tiny_config(tmp_path, methods=("entropy-ssl",), ssl="selftrain")
    trained = trained_by_folder(plan(config), tmp_path)
    assert "--teacher" not in trained["_initial/seed0/ssl=selftrain"][1].argv  # the first cycle: supervised
    assert value(trained["entropy-ssl/seed0/cycle2"][1].argv, "--teacher") == str(
        tmp_path / "entropy-ssl/seed0/cycle1/model.pt")
    assert not [folder for folder in trained if folder.endswith("/teacher")]


@pytest.mark.parametrize("cycles", [0, 2])
def test_the_last_cycle_trains_with_its_own_flags(tmp_path, cycles):
    """LAST_TRAIN_ARGS (S4AL+'s longer last cycle, MEAL's 32 epochs after the last step) come after every other
    flag of the last acquisition cycle's models, teachers included; CYCLES=0 has no acquisition cycle."""
    config = tiny_config(tmp_path, methods=("entropy", "entropy-ssl"), ssl="selftrain", ssl_teacher="supervised",
                         cycles=cycles, train_args=("--epochs", "3"), last_train_args=("--epochs", "9"))
    trained = trained_by_folder(plan(config), tmp_path)
    longer = {folder for folder, (_, step) in trained.items() if last_value(step.argv, "--epochs") == "9"}
    assert longer == ({"entropy/seed0/cycle2", "entropy-ssl/seed0/cycle2", "entropy-ssl/seed0/cycle2/teacher"}
                      if cycles else set())


@pytest.mark.parametrize("warm_start", [False, True])
def test_warm_start_starts_each_supervised_cycles_head_from_the_previous_model(tmp_path, warm_start):
    """WARM_START (the study's supervised cycles): cycles >= 1 of the methods without -ssl train with
    --init-head-from the previous cycle's model, before LAST_TRAIN_ARGS; the initial model and -ssl ones start fresh."""
    config = tiny_config(tmp_path, methods=("entropy", "entropy-ssl"), ssl="s4gan", warm_start=warm_start,
                         last_train_args=("--epochs", "9"))
    trained = trained_by_folder(plan(config), tmp_path)
    heads = {folder: value(step.argv, "--init-head-from") for folder, (_, step) in trained.items()}
    expected = {"entropy/seed0/cycle1": str(tmp_path / "entropy/seed0/cycle0/model.pt"),
                "entropy/seed0/cycle2": str(tmp_path / "entropy/seed0/cycle1/model.pt")} if warm_start else {}
    assert {folder: head for folder, head in heads.items() if head} == expected
    if warm_start:
        argv = trained["entropy/seed0/cycle2"][1].argv
        assert argv[-2:] == ("--epochs", "9")  # the last cycle's flags stay last


@pytest.mark.parametrize(("text", "warm_start"), [("1", True), ("0", False), ("", False)])
def test_warm_start_is_read_as_the_shell_sets_it(text, warm_start):
    config = Config.from_environ({"DATASET": "synthetic", "DATA_ROOT": "d", "OUT": "o", "WARM_START": text})
    assert config.warm_start is warm_start


@pytest.mark.parametrize(("fields", "message"), [
    ({"ssl_teacher": "mean-teacher"}, "SSL_TEACHER: 'mean-teacher' is neither previous"),
    ({"teacher_args": ("--epochs", "3")}, "TEACHER_ARGS: flags of the supervised teachers of SSL_TEACHER=supervised, "
                                          "but SSL_TEACHER is previous"),
])
def test_a_bad_teacher_setting_is_refused_before_any_step(fields, message):
    with pytest.raises(UserError, match="^" + message):
        plan(tiny_config("o", **fields))


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
    assert layout.where(layout.cycle("entropy-ssl", 0, 1) / "teacher" / "model.pt", 4) == (
        "seed 0, entropy-ssl, cycle 1 of 4 (its supervised teacher)")


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
    # runtime flags, extensions, the table
    same = tiny_config(tmp_path, train_args=("--epochs", "10", "--workers=0", "--threads", "1", "--device", "cpu"),
                       seeds=(0, 1), methods=("entropy", "bald"), cycles=5, budget="30", cache_dir="cache",
                       device="cuda")
    check_settings(same, accept_changes=False)
    longer = tiny_config(tmp_path, train_args=("--epochs", "20"), initial="5%")
    with pytest.raises(UserError, match=r"this experiment was run with other settings \(INITIAL was '10%', is "
                                        r"'5%'; TRAIN_ARGS was '--epochs 10', is '--epochs 20'\); use another OUT"):
        check_settings(longer, accept_changes=False)
    assert (tmp_path / "experiment.json").read_text() == recorded
    check_settings(longer, accept_changes=True)
    assert "settings changed (INITIAL, TRAIN_ARGS), accepted" in capsys.readouterr().out
    check_settings(longer, accept_changes=False)  # the accepted settings are the record now


def test_settings_added_later_read_as_their_defaults_in_older_records(tmp_path):
    """SSL_TEACHER, TEACHER_ARGS, LAST_TRAIN_ARGS and WARM_START: a record made before them holds none, as one of an
    experiment at their defaults; with LAST_TRAIN_ARGS more CYCLES would leave a longer-trained cycle mid-curve."""
    config = tiny_config(tmp_path, cycles=2)
    check_settings(replace(config, ssl_teacher="previous", warm_start=False), accept_changes=False)
    record = json.loads((tmp_path / "experiment.json").read_text())
    assert not {"SSL_TEACHER", "TEACHER_ARGS", "LAST_TRAIN_ARGS", "WARM_START", "CYCLES"} & set(record)  # as before
    with pytest.raises(UserError, match=r"\(WARM_START was '0', is '1'\)"):  # as the variable is set
        check_settings(replace(config, warm_start=True), accept_changes=False)
    longer = replace(config, last_train_args=("--epochs", "9"))
    with pytest.raises(UserError, match=r"\(LAST_TRAIN_ARGS was '', is '--epochs 9'\)"):
        check_settings(longer, accept_changes=False)
    check_settings(longer, accept_changes=True)
    assert json.loads((tmp_path / "experiment.json").read_text())["CYCLES"] == 2
    with pytest.raises(UserError, match=r"\(CYCLES was 2, is 3\)"):
        check_settings(replace(longer, cycles=3), accept_changes=False)
