"""bench/gpu.sh: its parts run at smoke-test sizes (--quick) on whatever device there is, each under its header."""
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from conftest import REPO_ROOT

GPU_SH = ["bash", str(REPO_ROOT / "bench" / "gpu.sh")]
PARTS = ("data: ", "score, -j 2 ", "select: ", "umap on ", "pool: ", "train: ", "cycle: ")


def run_gpu_sh(args, tmp_path, **env):
    return subprocess.run(GPU_SH + args, env={**os.environ, "PYTHON": sys.executable, **env}, capture_output=True,
                          text=True, cwd=tmp_path)


@pytest.mark.slow
def test_quick_run_passes_every_part_under_its_header(tmp_path):
    # MEAL's ImageNet backbone from the test itself, not ../shared (which a clone lacks): random weights time alike.
    weights = tmp_path / "mobilenet_v2.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    out = tmp_path / "out"
    run = run_gpu_sh(["--quick", "--out", "out"], tmp_path, PRETRAINED=str(weights))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("torch ") and f"output: {out}" in lines  # the machine first; --out from the caller's cwd
    for part in PARTS:
        headers = [line for line in lines if line.startswith(f"=== {part}")]
        assert len(headers) == 2 and ": ok in " in headers[1], part  # its command, then how it ended
    assert (out / "camvid_meal" / "meal" / "seed0" / "cycle1" / "metrics.json").is_file()  # the cycle ran to its end


@pytest.mark.parametrize("args, error", [
    (["--bogus"], "error: unknown argument --bogus"),
    (["--out", "taken"], "is not empty"),
])
def test_bad_arguments_are_one_error_line(tmp_path, args, error):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    run = run_gpu_sh(args, tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: ") and error in run.stderr and run.stderr.count("\n") == 1
