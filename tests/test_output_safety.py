"""Never destroy what a user points us at (lib/outputs.py): every script, every writer.

The table runs each script's real command line with an output that is, contains or lies
inside an input, equals another output, names an existing folder, or is a folder some
other hand filled: each is refused before any work, with one line naming both flags,
and no file of the inputs or outputs changes (tests/bad_input_kit.py). The tests after
it show what is allowed: an earlier export is replaced whole, at every moment there,
and a pool of ours is rewritten.
"""
import csv
import json
import shutil
import stat
import subprocess

import pytest
from PIL import Image

from bad_input_kit import SCRIPTS, Case, Inputs, case_ids, check_case
from conftest import fail, import_script
from lib import worklist
from lib.data import open_dataset
from lib.errors import UserError
from lib.fileio import new_folder_mode
from lib.owned import MARKER, claim_folder, read_marker
from lib.units import Unit
from lib.worklist import check_distinct_names, write_worklist

select, train = SCRIPTS["select"], SCRIPTS["train"]
make_synthetic, make_pools = import_script("scripts/make_synthetic.py"), import_script("scripts/make_a2d2_pools.py")
GENERATORS = {"make_synthetic": make_synthetic, "make_pools": make_pools}


class SafetyInputs(Inputs):
    def users_folder(self, name="mine"):
        """A folder of the user's, with a file in it."""
        folder = self.tmp / name
        folder.mkdir()
        (folder / "notes.txt").write_text("mine\n")
        return str(folder)

    def path(self, relative):
        return str(self.tmp / relative)

    def selftrain(self, *flags):
        return self.train("--ssl", "selftrain", "--teacher", str(self.trained / "model.pt"), *flags)

    def predictions(self, *flags):
        (self.tmp / "preds").mkdir()
        return ["--predictions", str(self.tmp / "preds"), "--dataset", "synthetic", "--data-root", str(self.pool),
                *flags]

    def dangling_link(self):
        (self.tmp / "link").symlink_to(self.tmp / "nowhere")
        return str(self.tmp / "link")

    def link_to(self, target):
        (self.tmp / "link").symlink_to(target)
        return str(self.tmp / "link")

    def users_projects(self):
        """A user's folder whose subfolders happen to bear layout names, as an older cache's did."""
        (self.tmp / "projects" / "folder" / "important").mkdir(parents=True)
        (self.tmp / "projects" / "folder" / "important" / "notes.txt").write_text("mine\n")
        (self.tmp / "projects" / "voc").mkdir()
        return str(self.tmp / "projects")

    def copied_cache(self):
        """A cache copied with its marker (cp -r), then given files of the user's."""
        select.main(self.first_cycle("--cache-dir", self.path("cache"), "--method", "random", "--out",
                                     self.path("i.json")))
        (self.tmp / "i.json").unlink()
        shutil.copytree(self.tmp / "cache", self.tmp / "copy")
        (self.tmp / "copy" / "notes.txt").write_text("mine\n")
        return self.path("copy")

    def users_dataset(self):
        """A `folder` dataset of the user's: the pool without the file that says a generator made it."""
        shutil.copytree(self.pool, self.tmp / "data")
        (self.tmp / "data" / "synthetic.json").unlink()
        (self.tmp / "data" / MARKER).unlink(missing_ok=True)
        return str(self.tmp / "data")


INPUT = "an input; write the output elsewhere"
NOT_OURS = "is a non-empty folder this toolkit did not make"
RULE_CASES = [
    # train.py
    Case("out-is-index", "train", lambda s: s.train("--out", "{trained}/index.json".format(**s.ids)),
         "--out {trained}/index.json: is --index {trained}/index.json, " + INPUT),
    Case("out-in-data-root", "train", lambda s: s.train("--out", "{root}/model.pt".format(**s.ids)),
         "--out {root}/model.pt: lies inside --data-root {root}, " + INPUT),
    Case("out-is-a-folder", "train", lambda s: s.train("--out", str(s.out)),
         "--out {tmp}/out: is an existing folder; give the path of a file to write"),
    Case("resume-file-is-index", "train",
         lambda s: s.train("--out", s.path("index"),
                           "--index", str(shutil.copy(s.trained / "index.json", s.tmp / "index.resume"))),
         "--out's .resume file {tmp}/index.resume: is --index {tmp}/index.resume, " + INPUT),
    Case("out-is-teacher", "train", lambda s: s.selftrain("--out", "{trained}/model.pt".format(**s.ids)),
         "--out {trained}/model.pt: is --teacher {trained}/model.pt, " + INPUT),
    Case("pseudo-dir-in-masks", "train", lambda s: s.selftrain("--pseudo-dir", "{root}/train/masks".format(**s.ids)),
         "--pseudo-dir {root}/train/masks: lies inside --data-root {root}, " + INPUT),
    Case("pseudo-dir-of-the-user", "train", lambda s: s.selftrain("--pseudo-dir", s.users_folder()),
         "--pseudo-dir {tmp}/mine: " + NOT_OURS),
    Case("out-in-cache-dir", "train", lambda s: s.train("--cache-dir", s.path("cache"), "--out", s.path("cache/m.pt")),
         "--out {tmp}/cache/m.pt: lies inside --cache-dir {tmp}/cache, " + INPUT),
    Case("cache-dir-in-data-root", "train", lambda s: s.train("--cache-dir", "{root}/cache".format(**s.ids)),
         "--cache-dir {root}/cache: lies inside --data-root {root}, " + INPUT),
    Case("cache-dir-of-the-user", "train", lambda s: s.train("--cache-dir", s.users_folder()),
         "--cache-dir {tmp}/mine: " + NOT_OURS),
    # Folders named like a layout's cache ("folder", "voc") are not an older version's cache unless entries alone.
    Case("cache-dir-like-an-old-cache", "train", lambda s: s.train("--cache-dir", s.users_projects()),
         "--cache-dir {tmp}/projects: " + NOT_OURS),
    Case("cache-dir-with-a-copied-marker", "train", lambda s: s.train("--cache-dir", s.copied_cache()),
         "--cache-dir {tmp}/copy: holds a marker copied from another folder, not a decoded cache of --cache-dir"),
    Case("out-name-too-long", "train", lambda s: s.train("--out", s.path("a" * 300 + ".pt")),
         "/" + "a" * 300 + ".pt: cannot use this path (File name too long)"),
    # evaluate.py
    Case("out-is-checkpoint", "evaluate", lambda s: s.evaluate("--out", "{trained}/model.pt".format(**s.ids)),
         "--out {trained}/model.pt: is --checkpoint {trained}/model.pt, " + INPUT),
    Case("out-in-data-root", "evaluate", lambda s: s.evaluate("--out", "{root}/val/m.json".format(**s.ids)),
         "--out {root}/val/m.json: lies inside --data-root {root}, " + INPUT),
    Case("out-in-predictions", "evaluate", lambda s: s.predictions("--out", s.path("preds/m.json")),
         "--out {tmp}/preds/m.json: lies inside --predictions {tmp}/preds, " + INPUT),
    # select.py
    Case("out-is-index", "select", lambda s: s.select("--out", "{trained}/index.json".format(**s.ids)),
         "--out {trained}/index.json: is --index {trained}/index.json, " + INPUT),
    Case("scores-out-is-index", "select", lambda s: s.select("--scores-out", "{trained}/index.json".format(**s.ids)),
         "--scores-out {trained}/index.json: is --index {trained}/index.json, " + INPUT),
    Case("scores-out-is-checkpoint", "select",
         lambda s: s.select("--scores-out", "{trained}/model.pt".format(**s.ids)),
         "--scores-out {trained}/model.pt: is --checkpoint {trained}/model.pt, " + INPUT),
    Case("scores-out-is-out", "select", lambda s: s.select("--scores-out", s.path("out/next.json")),
         "--out {tmp}/out/next.json: is also --scores-out; give each output its own path"),
    Case("out-is-pool-file", "select",
         lambda s: s.select("--pool", s.text_file("pool.json", json.dumps(s.pool_ids)), "--out", s.path("pool.json")),
         "--out {tmp}/pool.json: is --pool {tmp}/pool.json, " + INPUT),
    Case("umap-cache-is-index", "select",
         lambda s: s.select("--method", "meal", "--umap-cache", "{trained}/index.json".format(**s.ids)),
         "--umap-cache {trained}/index.json: is --index {trained}/index.json, " + INPUT),
    Case("export-is-data-root", "select", lambda s: s.select("--export", str(s.pool)),
         "--export {root}: is --data-root {root}, " + INPUT),
    Case("export-is-a-split", "select", lambda s: s.select("--export", "{root}/train".format(**s.ids)),
         "--export {root}/train: lies inside --data-root {root}, " + INPUT),
    Case("export-is-previous-cycle", "select", lambda s: s.select("--export", str(s.trained)),
         "--export {trained}: contains --index {trained}/index.json, " + INPUT),
    Case("export-holds-out", "select", lambda s: s.select("--export", str(s.out)),
         "--out {tmp}/out/next.json: lies inside --export {tmp}/out, another output"),
    Case("export-of-the-user", "select", lambda s: s.select("--export", s.users_folder()),
         "--export {tmp}/mine: " + NOT_OURS + ", not a worklist of select.py --export"),
    Case("export-is-a-file", "select", lambda s: s.select("--export", s.text_file("list.txt", "x")),
         "--export {tmp}/list.txt: exists and is not a folder"),
    Case("export-dangling-link", "select", lambda s: s.select("--export", s.dangling_link()),
         "--export {tmp}/link: is a symbolic link to nothing"),
    Case("export-link-into-data", "select", lambda s: s.select("--export", s.link_to(s.pool / "train")),
         "--export {tmp}/link: lies inside --data-root {root}, " + INPUT),
    # generators
    Case("into-a-users-dataset", "make_synthetic", lambda s: [s.users_dataset(), "--sequences", "2"],
         "{tmp}/data: " + NOT_OURS + ", not a synthetic pool of scripts/make_synthetic.py"),
    Case("out-in-data-root", "make_pools",
         lambda s: ["--dataset", "synthetic", "--data-root", str(s.pool), "--out", "{root}/pools".format(**s.ids)],
         "--out {root}/pools: lies inside --data-root {root}, " + INPUT),
    Case("out-of-the-user", "make_pools",
         lambda s: ["--dataset", "synthetic", "--data-root", str(s.pool), "--out", s.users_folder()],
         "--out {tmp}/mine: " + NOT_OURS + ", not redundant pools of scripts/make_a2d2_pools.py"),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=case_ids(RULE_CASES))
def test_outputs_never_overwrite_or_bury_inputs(case, synthetic_pool, trained_tiny, tmp_path, monkeypatch, capsys):
    check_case(case, SafetyInputs(tmp_path, synthetic_pool, trained_tiny, monkeypatch), capsys,
               {**SCRIPTS, **GENERATORS})


# What the rule allows: an export replaces an earlier export, whole, at every moment.

@pytest.fixture()
def dataset(synthetic_pool):
    return open_dataset("synthetic", synthetic_pool, "train")


def worklist_ids(folder):
    with open(folder / "worklist.csv", newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def test_an_export_replaces_an_earlier_export_or_an_empty_folder_only(dataset, tmp_path):
    (tmp_path / "work").mkdir()  # made by hand for the worklist: nothing in it to lose
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[:1], None, "random", 0)
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[1:3], None, "random", 1)
    assert worklist_ids(tmp_path / "work") == dataset.ids[1:3]
    assert stat.S_IMODE((tmp_path / "work").stat().st_mode) == new_folder_mode()  # open to the lab, as mkdir makes it


@pytest.mark.parametrize("edit", ["an added file", "a changed file", "a copy"])
def test_an_export_that_annotators_worked_in_is_never_replaced(dataset, tmp_path, capsys, edit):
    write_worklist(tmp_path / "work", dataset, Unit("patch", (2, 2)), [f"{dataset.ids[0]}#r0c0"], None, "random", 0)
    folder = tmp_path / "work"
    if edit == "an added file":
        (folder / "masks" / "my_label.png").write_bytes(b"an annotator's work")
    elif edit == "a changed file":
        next((folder / "masks").iterdir()).write_bytes(b"an annotator's work")
    else:  # copied with its marker, then worked in: the copy is the annotators', not an export
        shutil.copytree(folder, tmp_path / "copy")
        folder = tmp_path / "copy"
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with pytest.raises(UserError, match="which a worklist of select.py --export did not write or which was changed "
                                        "since|holds a marker copied from another folder"):
        write_worklist(folder, dataset, Unit(), dataset.ids[1:2], None, "random", 1)
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_an_export_through_a_link_replaces_the_folder_it_points_to(dataset, tmp_path):
    write_worklist(tmp_path / "real", dataset, Unit(), dataset.ids[:1], None, "random", 0)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    write_worklist(tmp_path / "link", dataset, Unit(), dataset.ids[1:2], None, "random", 1)
    assert (tmp_path / "link").is_symlink() and worklist_ids(tmp_path / "real") == dataset.ids[1:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


class Killed(BaseException):
    """A kill at a chosen point of an export (KeyboardInterrupt's place in the hierarchy: not an Exception)."""


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_killed_export_leaves_the_old_or_the_new_worklist_and_the_next_one_cleans_up(dataset, tmp_path, monkeypatch,
                                                                                          swap):
    if swap == "two renames":  # a file system without renameat2's exchange
        monkeypatch.setattr(worklist, "exchange_paths", lambda a, b: False)
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[:1], None, "random", 0)

    def kill_in(function):
        def killed(*args, **kwargs):
            raise Killed

        monkeypatch.setattr(worklist, function, killed)

    kill_in("write_csv")  # while the new worklist is written: the old one stays
    with pytest.raises(Killed):
        write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[1:2], None, "random", 1)
    assert worklist_ids(tmp_path / "work") == dataset.ids[:1]
    monkeypatch.undo()
    if swap == "two renames":
        monkeypatch.setattr(worklist, "exchange_paths", lambda a, b: False)
    rmtree = shutil.rmtree
    monkeypatch.setattr(worklist.shutil, "rmtree", lambda path: (_ for _ in ()).throw(Killed))
    with pytest.raises(Killed):  # after the swap, before the old worklist is deleted: the new one is in place
        write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[2:3], None, "random", 2)
    assert worklist_ids(tmp_path / "work") == dataset.ids[2:3]
    assert len(list(tmp_path.iterdir())) == 2  # the old worklist, in a hidden sibling
    monkeypatch.setattr(worklist.shutil, "rmtree", rmtree)
    write_worklist(tmp_path / "work", dataset, Unit(), dataset.ids[3:4], None, "random", 3)
    assert [p.name for p in tmp_path.iterdir()] == ["work"] and worklist_ids(tmp_path / "work") == dataset.ids[3:4]


def test_worklist_names_stay_distinct_and_cells_never_run_as_formulas(synthetic_pool, tmp_path):
    """Ids that collided as file names ('#' written '__'), and ids a spreadsheet would evaluate."""
    root = tmp_path / "pool"
    (root / "train" / "images").mkdir(parents=True)
    shutil.copy(synthetic_pool / "classes.json", root / "classes.json")
    image = Image.open(next((synthetic_pool / "train" / "images").iterdir()))
    ids = ["x#r0c0", "x__r0c0", "=1+2", "+cmd", "-2", "@SUM(A1)"]
    for image_id in ids:
        image.save(root / "train" / "images" / f"{image_id}.png")
    select.main(["--dataset", "folder", "--data-root", str(root), "--method", "random", "--budget", str(len(ids)),
                 "--out", str(tmp_path / "index.json"), "--export", str(tmp_path / "work")])
    with open(tmp_path / "work" / "worklist.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["preview"] for row in rows}) == len(ids)
    assert all((tmp_path / "work" / row["preview"]).is_file() for row in rows)
    assert sorted(row["id"] for row in rows) == sorted(f"'{i}" if i[0] in "=+-@" else i for i in ids)
    assert all(not row["image"].startswith(("=", "+", "-", "@")) for row in rows)


# Generators rewrite what they made, and nothing else.

def test_make_synthetic_finishes_the_pool_a_killed_run_left(tmp_path):
    root = tmp_path / "pool"
    argv = [str(root), "--sequences", "2", "--frames", "2", "--val-images", "2", "--height", "32", "--width", "48"]
    make_synthetic.main(argv)
    assert json.loads((root / MARKER).read_text())["made_by"] == "a synthetic pool of scripts/make_synthetic.py"
    complete = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    (root / "synthetic.json").unlink()  # what a run killed halfway leaves: its marker, no completion file
    make_synthetic.main(argv)
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == complete


# Faults of the file system itself, where the test may mount one.

@pytest.fixture()
def small_filesystem(tmp_path):
    """A 256 KiB tmpfs: a real full disk. Needs mount rights (CI runs as root); skipped without them."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize(("epochs", "written"), [(1, "model.pt"), (2, "model.pt.resume")])
def test_a_full_disk_inside_torch_save_is_one_line(synthetic_pool, trained_tiny, small_filesystem, capsys, epochs,
                                                    written):
    (small_filesystem / "filler").write_bytes(bytes(200 * 1024))  # room for less than a checkpoint
    inputs = Inputs(small_filesystem.parent, synthetic_pool, trained_tiny, None)
    argv = inputs.train("--out", str(small_filesystem / "model.pt"), "--epochs", str(epochs))
    assert f"{small_filesystem / written}: write failed (No space left on device)" in fail(train, argv, capsys)
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler"]  # no torn file, no temporary file


def test_a_read_only_cache_is_refused_before_any_work(synthetic_pool, trained_tiny, small_filesystem, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    inputs = Inputs(small_filesystem.parent, synthetic_pool, trained_tiny, None)
    err = fail(train, inputs.train("--cache-dir", str(small_filesystem), "--out", str(inputs.tmp / "m.pt")), capsys)
    assert f"--cache-dir {small_filesystem}: folder {small_filesystem} is not writable" in err
    assert not (inputs.tmp / "m.pt").exists()


def test_a_folder_whose_marker_is_being_written_counts_as_empty(tmp_path):
    """Two runs creating one new --cache-dir at once: the second sees the first's marker half-written."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f".{MARKER}.k3j2l9x1.tmp").write_text("{")
    assert claim_folder(tmp_path / "cache", "a decoded cache of --cache-dir", "--cache-dir") == tmp_path / "cache"
    assert read_marker(tmp_path / "cache")["made_by"] == "a decoded cache of --cache-dir"


def test_ids_that_differ_only_in_case_are_refused_for_export(dataset, tmp_path):
    with pytest.raises(UserError, match="ids 'Ab' and 'ab' differ only in case"):
        check_distinct_names(["Ab", "x", "ab"])


def test_an_export_to_a_mount_point_is_refused_before_any_work(synthetic_pool, trained_tiny, small_filesystem,
                                                                 capsys):
    inputs = Inputs(small_filesystem.parent, synthetic_pool, trained_tiny, None)
    err = fail(select, inputs.first_cycle("--export", str(small_filesystem), "--out", str(inputs.tmp / "i.json")),
               capsys)
    assert f"--export {small_filesystem}: is a mount point, which cannot be replaced" in err
    assert not (inputs.tmp / "i.json").exists() and list(small_filesystem.iterdir()) == []
