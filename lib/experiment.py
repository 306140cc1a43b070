"""An active-learning experiment as data: its configuration, its folder layout, its plan.

The shell scripts under scripts/ set the configuration as variables (documented in
scripts/lib/al_loop.sh); `Config.from_environ` reads them, `plan(config)` turns them
into the list of steps (`Step`: a script, its argv and its output; `Link`: finished
files shared between folders), and lib/steps.py runs the steps whose outputs are
missing. Planning touches no file, so a paper script's plan is checked in
milliseconds (tests/test_experiment.py parses every step with its script's parser).

Layout (`Layout`, also read by lib/report.py):

    OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json, scores.json}
    OUT/<method>/seed<k>/cycle<c>/teacher/  SSL_TEACHER=supervised: the supervised teacher of the cycle's labels
    OUT/_initial/seed<k>/            the initial cycle, one random draw per seed shared by every method
    OUT/_initial/seed<k>/<variant>/  its model for methods whose models need other training flags (and the
                                     initial teacher of SSL_TEACHER=supervised, named by TEACHER_ARGS)
    OUT/_initial/seed<k>/umap.pt     MEAL's map of the pool, fitted once per seed
    OUT/_full/seed<k>/               the fully supervised reference (FULL=1)
"""
import hashlib
import re
import shlex
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lib.errors import UserError

INITIAL, FULL = "_initial", "_full"
TEACHER = "teacher"  # a cycle's subfolder holding its supervised teacher (SSL_TEACHER=supervised)
# SSL_TEACHER: the teacher of a cycle's model under an --ssl mode that learns from one.
PREVIOUS, SUPERVISED = "previous", "supervised"
SEED_DIR = re.compile(r"^seed(\d+)$")
CYCLE_DIR = re.compile(r"^cycle(\d+)$")
MODEL_FILES = ("index.json", "model.pt", "metrics.json")
MAX_VARIANT_NAME = 120  # a folder name stays far below NAME_MAX (255) whatever SSL_ARGS holds


class Layout:
    """Where an experiment's files live; the one place that knows the folder names."""

    def __init__(self, root):
        self.root = Path(root)

    def cycle(self, method, seed, cycle):
        return self.root / method / f"seed{seed}" / f"cycle{cycle}"

    def initial(self, seed, variant=""):
        return self.root / INITIAL / f"seed{seed}" / variant

    def umap_cache(self, seed):
        return self.initial(seed) / "umap.pt"

    def full(self, seed):
        return self.root / FULL / f"seed{seed}"

    def where(self, path, cycles):
        """Which part of the experiment a file of it belongs to, in words: 'seed 0, entropy, cycle 2 of 4'."""
        parts = Path(path).relative_to(self.root).parts
        seed = next((m[1] for part in parts if (m := SEED_DIR.match(part))), None)
        if seed is None:
            return "the whole experiment"
        if parts[0] == INITIAL:
            return f"seed {seed}, the initial cycle" + (f" ({parts[2]})" if len(parts) > 3 else "")
        if parts[0] == FULL:
            return f"seed {seed}, full supervision"
        cycle = next((m[1] for part in parts if (m := CYCLE_DIR.match(part))), "?")
        teacher = " (its supervised teacher)" if TEACHER in parts[3:-1] else ""
        return f"seed {seed}, {parts[0]}, cycle {cycle} of {cycles}{teacher}"

    def metrics_files(self):
        """{method: {seed: [(cycle, metrics.json), ...] by cycle}} of the finished cycles."""
        return self.cycle_files("metrics.json")

    def cycle_files(self, name):
        """{method: {seed: [(cycle, file), ...] by cycle}} of the cycles that have the file `name`. Folders whose
        name starts with '_' or '.' hold shared or temporary state, not methods."""
        found = {}
        for method_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name[0] not in "_."):
            for seed, seed_dir in _numbered(method_dir, SEED_DIR):
                cycles = [(cycle, path / name) for cycle, path in _numbered(seed_dir, CYCLE_DIR)
                          if (path / name).exists()]
                if cycles:
                    found.setdefault(method_dir.name, {})[seed] = cycles
        return found

    def reference_files(self):
        """{name: {seed: metrics.json}} of the models trained on the whole pool: _full (FULL=1), _full-*."""
        found = {}
        for folder in sorted(p for p in self.root.glob(f"{FULL}*") if p.is_dir()):
            for seed, seed_dir in _numbered(folder, SEED_DIR):
                if (seed_dir / "metrics.json").exists():
                    found.setdefault(folder.name, {})[seed] = seed_dir / "metrics.json"
        return found


def _numbered(folder, pattern):
    """[(number, subfolder)] of the subfolders whose name matches `pattern`, by number."""
    return sorted((int(match[1]), path) for path in folder.iterdir() if (match := pattern.match(path.name)))


@dataclass(frozen=True)
class Config:
    """One experiment, as the shell scripts configure it (scripts/lib/al_loop.sh documents each variable)."""

    dataset: str
    data_root: str
    out: str
    split: str = "train"
    val_split: str = "val"
    val_dataset: str = ""  # "": the pool's dataset and root
    val_data_root: str = ""
    pool: str = ""
    methods: tuple = ("random", "entropy")
    seeds: tuple = (0, 1, 2)
    initial: str = "10%"
    initial_method: str = "random"
    step: str | None = "10%"  # None: select.py's default (per-image region ranking)
    cycles: int = 4
    budget: str = ""
    setting: str = ""
    full: bool = False
    device: str = ""
    cache_dir: str = ""  # train.py's, select.py's and evaluate.py's --cache-dir (decoded images at their resolution)
    pretrained: str = ""  # ImageNet weights of MEAL's map of the pool
    nproc: int = 1  # processes of torchrun for the steps that run a model (1: none)
    launcher: tuple = ()  # the command that starts those steps instead (its words; default torchrun with NPROC)
    ssl: str = "s4gan"
    ssl_args: tuple = ()
    ssl_teacher: str = PREVIOUS  # or SUPERVISED: a supervised model of the cycle's own labels, trained first
    teacher_args: tuple = ()  # train.py flags of those supervised teachers beyond TRAIN_ARGS
    last_train_args: tuple = ()  # train.py flags of the last acquisition cycle's models, after all others
    warm_start: bool = False  # cycles >= 1 of the methods without -ssl start their head from the previous model
    unit_args: tuple = ()
    train_args: tuple = ()
    select_args: tuple = ()
    eval_args: tuple = ()
    summary_args: tuple = ()
    a2d2_root: str = ""  # with a2d2_pools: build the study's redundant pools there first
    a2d2_pools: str = ""

    @property
    def layout(self):
        return Layout(self.out)

    @property
    def step_launcher(self):
        """The words that start a model's step (Step.distributed) in processes of its own, before the script's path
        and argv; () runs it as any other step."""
        if self.launcher:
            return self.launcher
        if self.nproc > 1:  # --standalone: a free port, so that experiments on one machine run side by side
            return (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(self.nproc))
        return ()

    @classmethod
    def from_environ(cls, env, train_flags=()):
        """The configuration in the variables `env` (os.environ): each field from its name in capitals, the default
        where it is unset or empty, plus `train_flags` (TRAIN_FLAGS: words kept whole, paths with spaces included).
        Word lists are split as a shell would (quotes keep a path whole)."""
        missing = [name for name in ("DATASET", "DATA_ROOT", "OUT") if not env.get(name)]
        if missing:
            raise UserError(f"set {missing[0]}")
        config = cls(**{field.name: _field_value(field, env) for field in fields(cls)})
        step = env.get("STEP", cls.step)  # set but empty: select.py's default
        return replace(config, step=step or None, train_args=tuple(train_flags) + config.train_args)


def _field_value(field, env):
    name = field.name.upper()
    text = env.get(name, "")
    if not text:
        return field.default
    if isinstance(field.default, bool):
        return text != "0"
    if isinstance(field.default, int):
        return _whole_number(name, text, text)
    if field.name == "seeds":
        return tuple(_whole_number(name, text, word) for word in _words(name, text))
    if isinstance(field.default, tuple):
        return tuple(_words(name, text))
    return text


def _words(name, text):
    try:
        return shlex.split(text)
    except ValueError as err:  # an unbalanced quote
        raise UserError(f"{name}={text!r}: {err}") from None


def _whole_number(name, text, word):
    if not word.isdigit():  # isdigit: no sign, no fraction
        raise UserError(f"{name}={text!r}: {word!r} is not a whole number")
    return int(word)


# ------------------------------------------------------------------------------------------------
# Method variants: an experiment's method name -> what select.py and train.py run for it
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    acquisition: str  # select.py --method
    select_flags: tuple = ()  # select.py flags beyond those the acquisition's own inputs need


# Method names that are not acquisition methods of select.py. <method>-ssl is <method> on models trained
# with --ssl $SSL $SSL_ARGS (SSL_SUFFIX).
VARIANTS = {
    "uniform5-entropy": Variant("entropy", ("--prefilter", "uniform@5")),  # the study's Uniform(@5)+Entropy
}
SSL_SUFFIX = "-ssl"


def variant_of(method):
    return VARIANTS.get(method) or Variant(method)


@dataclass(frozen=True)
class MethodPlan:
    """What one method of an experiment runs, in every seed and cycle."""

    name: str
    acquisition: str
    train_flags: tuple  # flags of every model of the method, the initial one included
    select_flags: tuple  # beyond those of MEAL's map of the pool, which name the seed's folder
    reads_pool_map: bool
    teacher: str = ""  # "": none; PREVIOUS or SUPERVISED (SSL_TEACHER)
    teacher_flags: tuple = ()  # a SUPERVISED teacher's training flags (TEACHER_ARGS)
    warm_start: bool = False  # WARM_START: cycles >= 1 start ASPP and decoder from the previous cycle's model

    def initial_folder(self):
        """The folder under _initial/seed<k> of the initial model with these training flags ("" for none). One
        trained on a supervised teacher is not the teacher-less one an experiment of SSL_TEACHER=previous has."""
        return flags_folder_name(self.train_flags + (("--supervised-teacher",) if self.teacher == SUPERVISED else ()))

    def legacy_initial_folder(self):
        """The same folder as the shell loop before lib/experiment.py named it: the flags without spaces and
        dashes (--mc-dropout -> mcdropout). Its finished files are taken over rather than trained again."""
        return "".join(word.replace("-", "") for word in self.train_flags)


def method_plan(name, config):
    # The registries, here: they import torch, which the configuration and the layout do not need.
    from lib.acquire import METHODS
    from lib.semisup.modes import SSL_MODES

    ssl = name.endswith(SSL_SUFFIX)
    if ssl and config.ssl not in SSL_MODES:
        raise UserError(f"SSL: {config.ssl!r} is not a mode of train.py --ssl ({', '.join(SSL_MODES)})")
    variant = variant_of(name.removesuffix(SSL_SUFFIX))
    if variant.acquisition not in METHODS:
        raise UserError(f"METHODS: {name!r} is not a method ({', '.join(sorted(METHODS))}, "
                        f"{', '.join(VARIANTS)}, or one of them followed by {SSL_SUFFIX})")
    method = METHODS[variant.acquisition]
    train_flags = (("--ssl", config.ssl, *config.ssl_args) if ssl else ()) + (
        ("--mc-dropout",) if method.needs_mc_dropout else ())
    teacher = config.ssl_teacher if ssl and SSL_MODES[config.ssl].learns_from_teacher else ""
    # The study's code warm-starts its supervised cycles only; its SSL cycles start afresh (scripts/lib/study.sh).
    return MethodPlan(name, variant.acquisition, train_flags, variant.select_flags, method.reads_pool_map, teacher,
                      config.teacher_args, config.warm_start and not ssl)


def flags_folder_name(flags):
    """A readable folder name for training flags: --ssl s4gan --disc-lr 2.5e-5 --mc-dropout ->
    ssl=s4gan,disc-lr=2.5e-5,mc-dropout. Names that would be too long end in a hash of the flags."""
    groups = []
    for word in flags:
        if word.startswith("--"):
            groups.append(word[2:])
        elif groups:
            groups[-1] += "=" + word
        else:
            groups.append(word)
    name = ",".join(groups).replace("%", "%25").replace("/", "%2F")
    if len(name) > MAX_VARIANT_NAME:
        name = name[:MAX_VARIANT_NAME - 13] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


# ------------------------------------------------------------------------------------------------
# The plan
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """Run `script` (relative to the repository root) with `argv` unless `output` exists. A step that only
    feeds files of `needed_for` is skipped too once they all exist. `output` None: always run. `distributed`: it
    runs a model and can run under torchrun (the experiment's LAUNCHER, lib/steps.py)."""

    script: str
    argv: tuple
    output: str | None
    needed_for: tuple = ()
    distributed: bool = False


@dataclass(frozen=True)
class Link:
    """Share finished files of `source` in `target` (hard links, copies where the file system has none);
    skipped, as a Step, once every file of `needed_for` exists. `optional`: source files may be missing."""

    source: str
    target: str
    names: tuple
    needed_for: tuple = ()
    optional: bool = False


def plan(config):
    """[Step | Link] of the whole experiment, in the order they run."""
    check_teacher_settings(config)
    methods = [method_plan(name, config) for name in config.methods]  # every name checked before any work
    steps = []
    if config.a2d2_pools:
        steps.append(Step("scripts/make_a2d2_pools.py", ("--dataset", "a2d2", "--data-root", config.a2d2_root,
                                                          "--out", config.a2d2_pools, "--seed", "0"),
                          str(Path(config.a2d2_pools) / "pool_aug.json")))
    for seed in config.seeds:
        steps += initial_selection(config, seed)
        if config.full:
            steps += full_reference(config, seed)
        for method in methods:
            steps += method_cycles(config, method, seed)
    steps.append(Step("evaluate.py", ("--experiment", config.out, *_option("--budget", config.budget),
                                      *_option("--setting", config.setting), *config.summary_args), None))
    return steps


def check_teacher_settings(config):
    """SSL_TEACHER is a kind of teacher, and TEACHER_ARGS go to teachers that are trained."""
    if config.ssl_teacher not in (PREVIOUS, SUPERVISED):
        raise UserError(f"SSL_TEACHER: {config.ssl_teacher!r} is neither {PREVIOUS} (the previous cycle's model) "
                        f"nor {SUPERVISED} (a supervised model of the cycle's labels)")
    if config.teacher_args and config.ssl_teacher != SUPERVISED:
        raise UserError(f"TEACHER_ARGS: flags of the supervised teachers of SSL_TEACHER={SUPERVISED}, but "
                        f"SSL_TEACHER is {config.ssl_teacher}")


def _option(flag, value):
    return (flag, str(value)) if value else ()


def _runtime_flags(config):
    """Where and how the steps that read images run (DEVICE, CACHE_DIR): no setting, see lib.recorded_settings."""
    return (*_option("--device", config.device), *_option("--cache-dir", config.cache_dir))


def _data_flags(config):
    return ("--dataset", config.dataset, "--data-root", config.data_root, "--split", config.split,
            *_option("--pool", config.pool))


def initial_selection(config, seed):
    index = config.layout.initial(seed) / "index.json"
    return [Step("select.py", (*_data_flags(config), "--method", config.initial_method, "--budget", config.initial,
                               "--seed", str(seed), "--out", str(index), *config.unit_args), str(index))]


def _trains_in_one_process(flags):
    """Whether train.py `flags` name a --ssl mode or a --contrastive head, which train.py refuses under torchrun."""
    return any(flag in ("--ssl", "--contrastive") and value != "none" for flag, value in zip(flags, flags[1:]))


def full_reference(config, seed):
    """The fully supervised reference: every image of the pool labeled whole."""
    folder = config.layout.full(seed)
    index = folder / "index.json"
    select = Step("select.py", (*_data_flags(config), "--method", "random", "--budget", "100%", "--seed", str(seed),
                                "--out", str(index)), str(index))
    return [select, *train_and_evaluate(config, folder, seed, ())]


def train_and_evaluate(config, folder, seed, extra_flags, needed_for=()):
    model, metrics = folder / "model.pt", folder / "metrics.json"
    train_flags = (*config.train_args, *extra_flags)
    train = Step("train.py", (*_data_flags(config), "--index", str(folder / "index.json"), "--out", str(model),
                              "--resume", "--seed", str(seed), *_runtime_flags(config), *train_flags),
                 str(model), needed_for, distributed=not _trains_in_one_process(train_flags))
    evaluate = Step("evaluate.py", ("--checkpoint", str(model), "--dataset", config.val_dataset or config.dataset,
                                    "--data-root", config.val_data_root or config.data_root,
                                    "--split", config.val_split, "--out", str(metrics),
                                    *_runtime_flags(config), *config.eval_args),
                    str(metrics), needed_for, distributed=True)
    return [train, evaluate]


def method_cycles(config, method, seed):
    """The method's initial cycle (the seed's shared draw, trained with its flags) and its cycles; with
    `method.warm_start` the model of each of these (not the initial one) starts its head (--init-head-from) from the
    previous cycle's model, the study's supervised cycles (scripts/lib/study.sh)."""
    layout = config.layout
    initial, variant = layout.initial(seed), layout.initial(seed, method.initial_folder())
    cycle0 = layout.cycle(method.name, seed, 0)
    shared = tuple(str(cycle0 / name) for name in MODEL_FILES)  # once the method has them, the variant is done
    steps = []
    if variant != initial:
        steps.append(Link(str(initial), str(variant), ("index.json",), shared))
        if method.teacher != SUPERVISED:  # the shell loop trained no model on such a teacher
            legacy = layout.initial(seed, method.legacy_initial_folder())
            steps.append(Link(str(legacy), str(variant), MODEL_FILES[1:], shared, optional=True))
    teacher = ()
    if method.teacher == SUPERVISED:
        teacher_steps, teacher_model = initial_teacher(config, method, seed, shared)
        steps += teacher_steps
        teacher = ("--teacher", teacher_model)
    steps += train_and_evaluate(config, variant, seed, method.train_flags + teacher, shared)
    steps.append(Link(str(variant), str(cycle0), MODEL_FILES))
    select_flags = method.select_flags
    if method.reads_pool_map:
        select_flags += ("--umap-cache", str(layout.umap_cache(seed)), *_option("--pretrained", config.pretrained))
    for cycle in range(1, config.cycles + 1):
        folder, previous = layout.cycle(method.name, seed, cycle), layout.cycle(method.name, seed, cycle - 1)
        index = folder / "index.json"
        steps.append(Step("select.py", (
            *_data_flags(config), "--method", method.acquisition, "--index", str(previous / "index.json"),
            "--checkpoint", str(previous / "model.pt"), *_option("--budget", config.step), "--seed", str(seed),
            "--out", str(index), "--scores-out", str(folder / "scores.json"), *_runtime_flags(config),
            *config.unit_args, *config.select_args, *select_flags), str(index), distributed=True))
        warm = ("--init-head-from", str(previous / "model.pt")) if method.warm_start else ()
        last = config.last_train_args if cycle == config.cycles else ()
        steps += cycle_models(config, method, seed, folder, previous, warm + last)
    return steps


def initial_teacher(config, method, seed, needed_for):
    """(steps, model path) of the supervised teacher of the initial draw: the draw's model trained with TEACHER_ARGS,
    shared by the methods that learn from it (the draw's own model when TEACHER_ARGS is empty)."""
    initial, folder = config.layout.initial(seed), config.layout.initial(seed, flags_folder_name(method.teacher_flags))
    link = [Link(str(initial), str(folder), ("index.json",), needed_for)] if folder != initial else []
    return link + train_and_evaluate(config, folder, seed, method.teacher_flags, needed_for), str(folder / "model.pt")


def cycle_models(config, method, seed, folder, previous, extra_flags):
    """The training and evaluation of a cycle's model in `folder` (its flags followed by `extra_flags`), on its
    teacher: the `previous` cycle's model (SSL_TEACHER=previous), or a supervised model of the cycle's own labels,
    trained before it in folder/teacher with the same `extra_flags` (SSL_TEACHER=supervised). The model, not
    its teacher, selects the next cycle's items: the final model of a generation in S4AL+'s code (Nishant213/MMLAL
    main_al.py l.70-106, where each generation's student becomes the model)."""
    flags = method.train_flags + extra_flags
    if method.teacher == PREVIOUS:
        return train_and_evaluate(config, folder, seed, flags + ("--teacher", str(previous / "model.pt")))
    if method.teacher != SUPERVISED:
        return train_and_evaluate(config, folder, seed, flags)
    teacher = folder / TEACHER
    done = tuple(str(folder / name) for name in MODEL_FILES[1:])  # the model's: its teacher is then not needed
    return [Link(str(folder), str(teacher), ("index.json",), done),
            *train_and_evaluate(config, teacher, seed, method.teacher_flags + extra_flags, done),
            *train_and_evaluate(config, folder, seed, flags + ("--teacher", str(teacher / "model.pt")))]
