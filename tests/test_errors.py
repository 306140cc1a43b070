"""lib.errors.run_cli around the scripts: the ways a run ends that are not a bug."""
import subprocess
import sys

from conftest import REPO_ROOT


def test_a_reader_that_leaves_ends_the_script_quietly(tmp_path):
    """`evaluate.py ... | head -1`: the lines after the first have no reader, which is no error of the script."""
    curve = tmp_path / "curve.json"
    curve.write_text('{"budgets": [10, 15, 20], "miou": [40, 45, 50]}')  # B between points: two lines printed
    script = subprocess.Popen([sys.executable, str(REPO_ROOT / "evaluate.py"), "--curve", str(curve), "--budget", "12"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    script.stdout.close()  # the reader is gone before the first line
    stderr = script.stderr.read()
    assert script.wait() == 141 and stderr == ""
