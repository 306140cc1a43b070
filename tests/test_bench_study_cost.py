"""bench/bench_study_cost.py's count of the study's training images, the basis of its GPU-hours estimate."""
import pytest

from bench.bench_study_cost import images_trained, main


def test_cityscapes_10_10_trains_every_model_of_its_cycles_for_100_epochs():
    # The initial 298 images (10 % of 2,975, rounded half up) train 4 models (plain, MC dropout for bald, s4GAN at
    # twice the steps' work); cycles 1-4 label 596 ... 1490 images, each trained by 5 methods and 5 -ssl ones (twice
    # the work).
    initial = 298 * 4
    later = sum(298 * (1 + cycle) for cycle in range(1, 5)) * (5 + 2 * 5)
    assert images_trained("cityscapes_10_10") == pytest.approx(100 * (initial + later))


def test_a2d2_3k_has_no_bald_and_three_ssl_methods():
    assert images_trained("a2d2_3k") == pytest.approx(100 * (1000 * 3 + (2000 + 3000) * (5 + 2 * 3)))


def test_the_estimate_prints_every_setting(capsys):
    main(["--quick", "--parts", "estimate"])
    out = capsys.readouterr().out
    assert "tiny OS16: train 256x512 fwd+bwd" in out and "GPU-hours at 250 TFLOP/s" in out
    assert all(setting in out for setting in ("cityscapes_10_10", "voc_2_2", "a2d2_poolaug_10_10", "a2d2_3k"))
