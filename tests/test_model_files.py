"""Models trained elsewhere: state dicts, torch.export programs and TorchScript files in select.py and evaluate.py."""
import json
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from conftest import REPO_ROOT, fail, import_script, train_tiny_model
from lib.checkpoint import load_checkpoint, model_from_checkpoint
from lib.data import open_dataset
from lib.model_files import EXPORTED, ModelFile
from lib.models import build_model

select, evaluate = import_script("select.py"), import_script("evaluate.py")

CLASSES = 8  # the synthetic pool's


@pytest.fixture(scope="module")
def models(synthetic_pool, tmp_path_factory):
    """A tiny checkpoint trained on 4 images, and the same network as a state dict, as traced TorchScript and as a
    torch.export program."""
    folder = train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("models"))
    checkpoint = load_checkpoint(folder / "model.pt")
    torch.save(checkpoint["model"], folder / "weights.pt")
    model = build_model(checkpoint["model_args"])
    model.load_state_dict(checkpoint["model"])
    save_scripted(model.eval(), folder / "traced.pt", trace_with=torch.zeros(1, 3, 32, 48))
    save_exported(model, folder / "exported.pt2")
    return folder


def save_scripted(module, path, trace_with=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        scripted = torch.jit.script(module) if trace_with is None else torch.jit.trace(module, trace_with)
        scripted.save(str(path))
    return path


def save_exported(module, path, example=(2, 3, 32, 48), dynamic=True):
    """The README's recipe: batch, height and width dynamic, unless `dynamic` is False."""
    size = torch.export.Dim.DYNAMIC
    shapes = ({0: size, 2: size, 3: size},) if dynamic else None
    torch.export.save(torch.export.export(module.eval(), (torch.zeros(example),), dynamic_shapes=shapes), path)
    return path


# Each format of models trained elsewhere: (how to save a module, the suffix, the kind errors name).
FORMATS = {
    "torchscript": (save_scripted, ".pt", "TorchScript model"),
    "export": (save_exported, ".pt2", "torch.export program"),
}


def select_argv(pool, models, checkpoint, method, out, *extra):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(models / "index.json"),
            "--checkpoint", str(checkpoint), "--method", method, "--budget", "3", "--seed", "1", "--out", str(out),
            "--workers", "0", "--device", "cpu", *extra]


def test_state_dict_torchscript_and_export_select_what_the_checkpoint_selects(synthetic_pool, models, tmp_path):
    for name, checkpoint, extra in (("ours.json", "model.pt", []), ("traced.json", "traced.pt", []),
                                    ("state_dict.json", "weights.pt", ["--arch", "tiny"])):
        select.main(select_argv(synthetic_pool, models, models / checkpoint, "entropy", tmp_path / name, *extra))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading and running a program warns of nothing, deprecations included
        select.main(select_argv(synthetic_pool, models, models / "exported.pt2", "entropy", tmp_path / "exported.json"))
    ours = (tmp_path / "ours.json").read_bytes()
    for other in ("state_dict.json", "traced.json", "exported.json"):
        assert (tmp_path / other).read_bytes() == ours, other


@pytest.mark.parametrize("name", ["traced.pt", "exported.pt2"])
def test_feature_layers_feed_coreset(name, synthetic_pool, models, tmp_path):
    argv = select_argv(synthetic_pool, models, models / name, "coreset", tmp_path / "next.json",
                       "--feature-layer", "backbone")
    select.main(argv)
    index = json.loads((tmp_path / "next.json").read_text())
    assert len(index["history"][-1]["added"]) == 3 and len(set(index["labeled"])) == 7


def test_an_exported_feature_layer_is_the_submodule_it_names(synthetic_pool, models):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    flags = select.get_args_parser().parse_args(select_argv(synthetic_pool, models, models / "exported.pt2", "coreset",
                                                            "next.json", "--feature-layer", "backbone"))
    exported = ModelFile(models / "exported.pt2").load(flags, dataset, torch.device("cpu")).model
    ours = model_from_checkpoint(load_checkpoint(models / "model.pt"), torch.device("cpu"), models / "model.pt")
    images = torch.rand(3, 3, 40, 56)  # another batch and size than it was exported with
    with torch.no_grad():
        assert torch.equal(exported.feature_map("aspp", images), ours.backbone(images)[1])  # the deepest stage
        assert torch.equal(exported(images), ours(images))


class DeepFirst(nn.Module):
    """Our backbone, its stages returned deep to shallow (the reverse of ours)."""

    def __init__(self, backbone):
        super().__init__()
        self.stages = backbone

    def forward(self, images):
        low, high = self.stages(images)
        return high, low


class DeepFirstNetwork(nn.Module):
    """Our network on a DeepFirst backbone (each module held once: tracing wants no shared submodules)."""

    def __init__(self, model):
        super().__init__()
        self.backbone = DeepFirst(model.backbone)
        self.aspp, self.decoder = model.aspp, model.decoder

    def forward(self, images):
        high, low = self.backbone(images)
        logits = self.decoder(low, self.aspp(high))  # [B, C, H/4, W/4]
        return nn.functional.interpolate(logits, images.shape[-2:], mode="bilinear", align_corners=False)


def test_a_feature_layer_of_stages_gives_the_deepest_in_any_order(synthetic_pool, models, tmp_path):
    ours = model_from_checkpoint(load_checkpoint(models / "model.pt"), torch.device("cpu"), models / "model.pt")
    path = save_scripted(DeepFirstNetwork(ours).eval(), tmp_path / "deep_first.pt",
                         trace_with=torch.zeros(1, 3, 32, 48))
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    flags = select.get_args_parser().parse_args(select_argv(synthetic_pool, models, path, "coreset", "next.json",
                                                            "--feature-layer", "backbone"))
    loaded = ModelFile(path).load(flags, dataset, torch.device("cpu")).model
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded.feature_map("aspp", images), ours.backbone(images)[1])


def test_evaluate_reads_every_kind_alike(synthetic_pool, models, tmp_path):
    common = ["--data-root", str(synthetic_pool), "--workers", "0", "--device", "cpu"]
    evaluate.main(["--checkpoint", str(models / "model.pt"), *common, "--out", str(tmp_path / "ours.json")])
    evaluate.main(["--checkpoint", str(models / "weights.pt"), "--arch", "tiny", "--dataset", "synthetic", *common,
                   "--out", str(tmp_path / "state_dict.json")])
    for name in ("traced.pt", "exported.pt2"):
        evaluate.main(["--checkpoint", str(models / name), "--dataset", "synthetic", *common,
                       "--out", str(tmp_path / f"{name}.json")])
    ours, state_dict, traced, exported = (json.loads((tmp_path / f"{n}.json").read_text())
                                          for n in ("ours", "state_dict", "traced.pt", "exported.pt2"))
    assert ours["confusion"] == state_dict["confusion"] == traced["confusion"] == exported["confusion"]
    assert ours["labeled"] == 4 and "labeled" not in traced and "labeled" not in exported  # no labeled set elsewhere


class Probe(nn.Module):
    """A 1x1 convolution that checks the size it is given: --input-size must reach the model."""

    def __init__(self, classes, width):
        super().__init__()
        self.head = nn.Conv2d(3, classes, 1)
        self.width = width

    def forward(self, x):
        assert x.shape[-1] == self.width, "unexpected input width"
        return self.head(x)[:, :, ::2, ::2]  # coarser logits than the input, as many models return


def test_input_size_resizes_for_the_model_and_back(synthetic_pool, models, tmp_path):
    path = save_scripted(Probe(CLASSES, 96), tmp_path / "probe.pt")
    select.main(select_argv(synthetic_pool, models, path, "entropy", tmp_path / "next.json", "--input-size", "64x96"))
    assert len(json.loads((tmp_path / "next.json").read_text())["labeled"]) == 7
    assert "unexpected input width" in str(pytest.raises(Exception, select.main,
                                                         select_argv(synthetic_pool, models, path, "entropy",
                                                                     tmp_path / "other.json")).value)


class Classifier(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))  # [B, 3]: one vector per image, not a map


class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(x)}


class NanLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, CLASSES, 1)

    def forward(self, x):
        return self.head(x) * float("nan")


def foreign_cases(fmt, pool, models, tmp):
    """Models from elsewhere that break the contract, saved in `fmt`, with the error each gives."""
    save, suffix, kind = FORMATS[fmt]
    five, eight, classifier, named, nan = (save(module, tmp / f"{name}{suffix}") for name, module in (
        ("five", nn.Conv2d(3, 5, 1)), ("eight", nn.Conv2d(3, CLASSES, 1)), ("classifier", Classifier()),
        ("named", Named()), ("nan", NanLogits())))
    argv = lambda checkpoint, method="entropy", *extra: select_argv(pool, models, checkpoint, method,  # noqa: E731
                                                                   tmp / "next.json", *extra)
    return [
        (argv(five), f"five{suffix}: the model returns 5 classes but the dataset has 8"),
        (argv(classifier), f"classifier{suffix}: the model must return logits [B, C, H, W] for 4 images, got [4, 3]"),
        (argv(named), f'named{suffix}: the model returns a dict without "out" (keys: logits)'),
        (argv(nan), f"nan{suffix}: the model returns NaN or infinite logits"),
        (argv(eight, "bald"), f"eight{suffix}: --method bald samples dropout in the decoder"),
        (argv(eight, "meal-ft"), "--method meal-ft reads features of the model: give --feature-layer"),
        (argv(eight, "coreset", "--feature-layer", "body"), "--feature-layer body: "),
        (argv(eight, "meal", "--umap-cache", str(tmp / "umap.pt")), f"a {kind} does not name; use meal-ft"),
        (argv(eight, "entropy", "--output-stride", "8"), "--output-stride: "),
        (argv(eight, "random", "--mean", "0.5,0.5,0.5"), "--mean describes a --checkpoint model"),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_foreign_models_are_one_line_errors(fmt, synthetic_pool, models, tmp_path, capsys):
    for argv, message in foreign_cases(fmt, synthetic_pool, models, tmp_path):
        assert message in fail(select, argv, capsys)
        assert not (tmp_path / "next.json").exists()
    suffix, kind = FORMATS[fmt][1:]
    argv = ["--checkpoint", str(tmp_path / f"eight{suffix}"), "--data-root", str(synthetic_pool), "--workers", "0"]
    assert f"eight{suffix}: a {kind} does not name its dataset: give --dataset" in fail(evaluate, argv, capsys)


def test_damaged_or_fixed_size_exports_are_one_line_errors(synthetic_pool, models, tmp_path, capsys):
    argv = lambda checkpoint: select_argv(synthetic_pool, models, checkpoint, "entropy",  # noqa: E731
                                          tmp_path / "next.json")
    fixed = save_exported(nn.Conv2d(3, CLASSES, 1), tmp_path / "fixed.pt2", example=(2, 3, 64, 64), dynamic=False)
    assert ("fixed.pt2: the model's forward failed on a batch of [4, 3, 32, 48] (AssertionError: Guard failed"
            in fail(select, argv(fixed), capsys))
    assert "; export it with dynamic sizes, torch.export.Dim.DYNAMIC (see README))" in fail(select, argv(fixed), capsys)
    shutil.copy(models / "exported.pt2", tmp_path / "program.pt")
    assert ModelFile(tmp_path / "program.pt").kind == EXPORTED  # recognised by its content, whatever its name
    cut = tmp_path / "cut.pt2"
    cut.write_bytes((models / "exported.pt2").read_bytes()[:4096])
    assert "cut.pt2: cannot load torch.export program (BadZipFile" in fail(select, argv(cut), capsys)
    assert not (tmp_path / "next.json").exists()


def bad_cases(pool, models, tmp):
    torch.save([1, 2, 3], tmp / "list.pt")
    argv = lambda checkpoint, method="entropy", *extra: select_argv(pool, models, checkpoint, method,  # noqa: E731
                                                                   tmp / "next.json", *extra)
    return [
        (argv(models / "weights.pt"), "weights.pt: a state dict does not name its architecture: give --arch"),
        (argv(models / "weights.pt", "entropy", "--arch", "mobilenet_v2"),
         "weights.pt: not a state dict of --arch mobilenet_v2 with 8 classes"),
        (argv(models / "weights.pt", "entropy", "--arch", "tiny", "--num-classes", "5"),
         "--num-classes 5: dataset 'synthetic' has 8 classes"),
        (argv(models / "model.pt", "entropy", "--arch", "tiny"),
         "--arch: " + str(models / "model.pt") + " is a checkpoint of this toolkit, which --arch does not apply to"),
        (argv(tmp / "list.pt"), "list.pt: not a checkpoint of this toolkit, a state dict, a torch.export program or "
                                "a TorchScript file"),
        (argv(models / "exported.pt2", "entropy", "--std", "1,2"),
         "argument --std: expected three comma-separated finite numbers above 0"),
    ]


def test_bad_model_files_are_one_line_errors(synthetic_pool, models, tmp_path, capsys):
    for argv, message in bad_cases(synthetic_pool, models, tmp_path):
        assert message in fail(select, argv, capsys)
        assert not (tmp_path / "next.json").exists()


def readme_blocks(heading):
    """The fenced code blocks of one README section, by language."""
    text = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n##+ ", text.split(f"\n### {heading}\n", 1)[1], maxsplit=1)[0]
    return dict(re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S))


@pytest.mark.slow
def test_readme_example_runs_as_written(synthetic_pool, tmp_path):
    """The README's torch.export example, on a `folder` copy of the synthetic pool at the paths it names."""
    blocks = readme_blocks("Models trained elsewhere")
    shutil.copytree(synthetic_pool, tmp_path / "data" / "mine")
    (tmp_path / "runs/mine/cycle0").mkdir(parents=True)
    select.main(["--dataset", "folder", "--data-root", str(tmp_path / "data/mine"), "--method", "random",
                 "--budget", "4", "--out", str(tmp_path / "runs/mine/cycle0/index.json")])
    subprocess.run([sys.executable, "-c", blocks["python"]], cwd=tmp_path, check=True, capture_output=True)
    command = blocks["bash"].replace("python select.py", f"{sys.executable} {REPO_ROOT / 'select.py'}")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, capture_output=True)
    index = json.loads((tmp_path / "next.json").read_text())
    assert index["history"][-1]["method"] == "coreset" and len(index["history"][-1]["added"]) == 2
