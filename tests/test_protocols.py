"""Every paper script's planned command lines against the published protocol values, without training.

Each row of PROTOCOLS is a value of the paper's protocol with its source (paper section or
the authors' code file); the scripts' plans (PLAN=1, lib/experiment.py) are parsed with
each script's own argparse parser, so a typo in a scripts/lib/*.sh fails here in
milliseconds. The script headers say why each value is what it is; this table is what
the plans must say.
"""
import re
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import import_script
from lib.experiment import Step
from test_experiment import handed_over

PARSERS = {script: import_script(script).get_args_parser() for script in ("train.py", "select.py", "evaluate.py")}
STUDY = {  # "Best practices", appendix B, and sud0301/best_practices_ALSS
    "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "poly",
    "batch_size": 8, "epochs": 100,
    "head_lr_mult": 10.0, "nesterov": False,  # model/deeplabv3p.py l.183-185, query_strategies/strategy.py l.104
}
STUDY_SSL = {"ssl": "s4gan", "disc_threshold": 0.6, "unlabeled_batch_size": 8}  # run.py l.92-94; SSS batch-size-unlab
MEAL = {  # Sreenivasaiah et al. 2021, section 4 (papers/meal.md l.197-203)
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant", "batch_size": 8,
    "flip": False, "item_crops": True, "keep_best": True, "freeze_backbone": True,
}
S4AL = {  # S4AL+ Table 1; Nishant213/MMLAL core_models.py configure_optimizers l.312-348
    "optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "head_lr_mult": 10.0,
    "lr_schedule": "poly", "random_scale": (0.5, 2.0),  # helpers/dataset_transforms.py do_transforms
}
S4AL_RECO = {"contrastive": "reco", "reco_temperature": 0.5, "reco_queries": 128, "reco_negatives": 256,
             "reco_strong_threshold": 0.95}  # core_models.py l.361-364: S4AL+'s teachers and students
S4AL_STUDENT = {"ssl": "selftrain", "batch_size": 2, "unlabeled_batch_size": 4, "pseudo_threshold": 0.7,
                "pseudo_scales": (0.5, 1.0, 2.0)}  # Table 1 (2 + 4); predict_step's scales; --pixel_threshold 0.70

# (scripts, role of the train.py step or the script of the step, expected values of its parsed flags)
PROTOCOLS = [
    (("cityscapes_10_10", "cityscapes_2_2"), "train", {**STUDY, "crop": (256, 512), "scale": Fraction(1, 2)}),
    # semisup-semseg data/augmentations.py RandomCrop_city: halved, then 256x512 crops
    (("a2d2_pool0f_10_10", "a2d2_pool21f_10_10", "a2d2_poolaug_10_10"), "train",
     {**STUDY, "crop": (256, 512), "scale": Fraction(1, 3)}),  # data/dataloaders/a2d2.py l.82-108
    (("a2d2_pool0f_10_10",), "evaluate", {"resize": (256, 512)}),  # a2d2.py l.63-76: evaluated at 256x512
    (("voc_10_10", "voc_5_5"), "train", {**STUDY, "crop": (321, 321), "random_scale": (0.5, 1.6, 0.1)}),
    # pascal_voc.py l.39-43: 0.5 + randint(0, 11) / 10
    (("cityscapes_10_10", "voc_10_10"), "student", {**STUDY, **STUDY_SSL}),
    (("cityscapes_10_10", "a2d2_pool0f_10_10"), "student", {"disc_lr": 2.5e-5}),  # the study's appendix B
    (("cityscapes_10_10", "voc_10_10"), "coreset", {"feature_pooling": "grid2x2"}),  # deeplabv3p.py l.102-108
    (("camvid_meal", "cityscapes_meal"), "train", {**MEAL, "epochs": 25}),
    (("camvid_meal", "cityscapes_meal"), "last", {**MEAL, "epochs": 32}),
    (("camvid_meal", "cityscapes_meal"), "select", {"grid": (4, 4), "informative": 200, "budget": "32"}),
    (("cityscapes_meal",), "train", {"resize": (512, 1024)}),  # 4x4 patches of 128x256 (inferred)
    (("camvid_s4al", "cityscapes_s4al"), "train", {**S4AL, "batch_size": 4, "epochs": 100}),
    (("camvid_s4al", "cityscapes_s4al"), "teacher", {**S4AL, **S4AL_RECO, "batch_size": 4}),
    (("camvid_s4al", "cityscapes_s4al"), "student", {**S4AL, **S4AL_RECO, **S4AL_STUDENT}),
    (("camvid_s4al",), "train", {"steps_per_epoch": 50, "crop": (360, 480)}),
    (("camvid_s4al",), "student", {"steps_per_epoch": 100}),
    (("camvid_s4al",), "last", {"epochs": 150}),
    (("cityscapes_s4al",), "train", {"steps_per_epoch": 100, "resize": (688, 688)}),  # DEAL's 688x688 resize
    (("cityscapes_s4al",), "student", {"steps_per_epoch": 300}),
    (("cityscapes_s4al",), "last", {"epochs": 200}),
    (("camvid_s4al",), "select", {"region_size": 30, "regions_per_image": 4, "region_ranking": "per-image"}),
    (("cityscapes_s4al",), "select", {"region_size": 43, "regions_per_image": 4, "region_ranking": "per-image"}),
]
SCRIPTS = sorted({script for scripts, _, _ in PROTOCOLS for script in scripts})
CYCLE = re.compile(r"/cycle(\d+)/")


def roles(step, last_cycle):
    """What a planned step is, for PROTOCOLS: train (a supervised model of an acquisition cycle but the last), last
    (the last cycle's), teacher (S4AL+'s supervised teacher), student (trained with --ssl), select (an acquisition),
    coreset (its coreset ones), evaluate."""
    cycle = CYCLE.search(step.output or "")
    if step.script == "evaluate.py":
        return {"evaluate"} if step.output else set()
    if step.script == "select.py":
        acquisition = "--checkpoint" in step.argv
        return ({"select"} | ({"coreset"} if "coreset" in step.argv else set())) if acquisition else set()
    if "/teacher/" in step.output:
        return {"teacher"}
    if "--ssl" in step.argv:
        return {"student"}
    if not (cycle and int(cycle[1]) >= 1):
        return set()
    return {"last"} if int(cycle[1]) == last_cycle else {"train"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_paper_script_plans_its_papers_protocol(script, tmp_path):
    config, steps = handed_over(f"{script}.sh", tmp_path, DATA_ROOT=str(tmp_path / "data"), OUT=str(tmp_path / "out"),
                                PRETRAINED="")
    planned = [(roles(step, config.cycles), PARSERS[step.script].parse_args(list(step.argv)))
               for step in steps if isinstance(step, Step) and step.script in PARSERS]
    for scripts, role, expected in PROTOCOLS:
        if script not in scripts:
            continue
        checked = [args for found, args in planned if role in found]
        assert checked, (script, role)  # every row applies to some step
        for args in checked:
            got = {name: _comparable(getattr(args, name)) for name in expected}
            assert got == {name: _comparable(value) for name, value in expected.items()}, (script, role)


def _comparable(value):
    """Parsed flag values as the table writes them: tuples of floats, fractions of --scale's text."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and re.fullmatch(r"\d+/\d+", value):
        return Fraction(value)
    return value


def test_the_warm_start_of_the_study_takes_the_previous_cycles_model_in_supervised_cycles_only(tmp_path):
    config, steps = handed_over("cityscapes_10_10.sh", tmp_path, DATA_ROOT=str(tmp_path / "data"),
                                OUT=str(tmp_path / "out"), METHODS="entropy entropy-ssl")
    for step in steps:  # strategy.py l.67-89 (supervised: ASPP and decoder kept), strategy_SSL.py l.133-149 (fresh)
        if not (isinstance(step, Step) and step.script == "train.py" and CYCLE.search(step.output)):
            continue
        cycle = int(CYCLE.search(step.output)[1])
        warm = PARSERS["train.py"].parse_args(list(step.argv)).init_head_from
        if cycle == 0 or "--ssl" in step.argv:
            assert warm is None, step.output
        else:
            assert Path(warm) == Path(step.output).parent.parent / f"cycle{cycle - 1}" / "model.pt"
