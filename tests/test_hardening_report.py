"""``gradlab report`` on folders someone passed around: it reads tables only, never imports, never writes
through a planted link, and says what it could not use (a torn last row) or refuses (damaged tables) in one
paragraph, exit 2, never a traceback."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.report import load_run, report
from cli_helpers import assert_bad_input

TINY = ("name: tiny\nseed: 0\ndata: {kind: blobs, n_samples: 64, n_features: 4, n_classes: 2}\n"
        "model: {depth: 2, width: 4, activation: tanh}\ntrain: {steps: 4}\nlog: {every: 1, out: OUT}\n")
MARKER_MODULE = ("import pathlib\npathlib.Path(__file__).with_name('IMPORTED').write_text('ran')\n"
                 "class Act:\n    pass\n")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One 4-step run of a 2x4 tanh net (about 0.3 s), copied by each test that damages it."""
    home = tmp_path_factory.mktemp("tiny")
    (home / "tiny.yaml").write_text(TINY.replace("OUT", str(home / "runs")), encoding="utf-8")
    assert invoke("train", home / "tiny.yaml", "-q").exit_code == 0
    (folder,) = (home / "runs").iterdir()
    return folder


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)
    return folder


def sweep_of(run: Path, tmp_path: Path) -> Path:
    """A sweep folder holding ``run`` as its one run (what gradlab sweep writes, by hand)."""
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.yaml").write_text("name: s\nbase: tiny.yaml\ngrid:\n  model.depth: [2]\n", encoding="utf-8")
    (folder / "summary.csv").write_text("model.depth,status,final_loss,delta_ratio_first,run\n"
                                        "2,completed,0.68,0.93,depth=2\n", encoding="utf-8")
    shutil.move(str(run), folder / "depth=2")
    return folder


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --------------------------------------------------------------------------- never imports


@pytest.mark.parametrize("where", ["run", "sweep"])
def test_report_shows_a_module_class_as_text_and_never_imports_it(run, tmp_path, where):
    """A hand-made folder whose config names ``marker_<where>:Act`` with import_dir the folder itself, where
    the module leaves a file when imported: the report is written, the class name appears as text, nothing
    is run."""
    module = f"marker_{where}"
    folder = run if where == "run" else sweep_of(run, tmp_path)
    home = folder if where == "run" else folder / "depth=2"
    config = home / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("activation:\n    name: tanh",
                                                                  f"activation:\n    name: {module}:Act")
                      .replace("model:\n", f"model:\n  import_dir: {home}\n", 1), encoding="utf-8")
    assert f"{module}:Act" in config.read_text(encoding="utf-8")
    (home / f"{module}.py").write_text(MARKER_MODULE, encoding="utf-8")
    result = invoke("report", folder, "--json")
    assert result.exit_code == 0, result.output
    assert not (home / "IMPORTED").exists() and module not in sys.modules
    assert load_run(home).config.model.activation.spec == f"{module}:Act"  # validated, as text
    if where == "run":
        assert f"{module}:Act" in (folder / "report.html").read_text(encoding="utf-8")
        assert json.loads(result.stdout)["theory"]["theory"] == f"a custom activation ({module}:Act)"


# --------------------------------------------------------------------------- planted symlinks


@pytest.mark.parametrize("where", ["run", "sweep"])
def test_report_refuses_output_names_planted_as_symlinks(run, tmp_path, where):
    folder = run if where == "run" else sweep_of(run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    png = "loss_grad_norm.png" if where == "run" else "sweep_ratio_heatmap.png"
    for name in ("report.html", png):
        (outside / name).write_text("precious", encoding="utf-8")
        (folder / name).symlink_to(outside / name)
    before = {p.name for p in folder.iterdir()}
    message = assert_bad_input(invoke("report", folder), "report.html", png, "symbolic link")
    assert str(folder) in message
    assert [(outside / n).read_text(encoding="utf-8") for n in ("report.html", png)] == ["precious"] * 2
    assert {p.name for p in folder.iterdir()} == before  # refused before writing anything
    assert (folder / "report.html").is_symlink()


def test_a_run_folder_the_user_names_through_a_link_is_reported_into(run, tmp_path):
    """runs/latest -> a run: the folder is the user's choice, so the report goes into the folder it names."""
    latest = tmp_path / "latest"
    latest.symlink_to(run)
    result = invoke("report", latest)
    assert result.exit_code == 0, result.output
    assert (run / "report.html").is_file() and not (run / "report.html").is_symlink()
    assert (run / "loss_grad_norm.png").read_bytes()[:4] == b"\x89PNG"


def test_an_alias_bomb_in_a_run_config_is_refused_at_once(run):
    """config.yaml is read as the config loader reads YAML: aliases that expand past its bound are refused."""
    bomb = "x-a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"x-{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
    raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    raw["model"] = {**raw["model"], "depth": None, "width": None, "layers": [
        {"type": "dense", "units": 4}, {"type": "custom", "class": "mod:Layer", "args": {"bomb": "BOMB"}}]}
    text = yaml.safe_dump(raw, sort_keys=False).replace("BOMB", "*i")
    (run / "config.yaml").write_text(bomb + text, encoding="utf-8")  # 10^9 values in a layer's args
    assert_bad_input(invoke("report", run), "config.yaml", "alias")


# --------------------------------------------------------------------------- torn last rows


@pytest.mark.parametrize("torn", ["77,5,-0.0396\n", "4,4,0.67"])
def test_a_torn_last_row_is_left_out_and_named(run, torn):
    """A run killed by a full disk leaves a last row with fewer fields, or one without its newline."""
    metrics = run / "metrics.csv"
    whole = lines(metrics)
    metrics.write_text("\n".join(whole) + "\n" + torn, encoding="utf-8")
    data = load_run(run)
    assert len(data.metrics) == len(whole) - 1 == 4  # the 4 whole rows, the torn one left out
    assert data.metrics.step.tolist() == [0, 1, 2, 3]
    assert data.notes == [f"metrics.csv: line {len(whole) + 1} is incomplete (the run stopped while writing it, "
                          "e.g. killed or out of disk space); the report leaves it out and reads the 4 whole rows "
                          "before it."]


def test_the_printed_report_and_report_html_name_the_torn_line(run):
    """One written report (plots take a few seconds): the note on the torn row is printed and in report.html,
    beside the note that an unreadable remedies.csv (from --try) was left out."""
    with open(run / "metrics.csv", "a", encoding="utf-8") as f:
        f.write("77,5,-0.0396")
    (run / "remedies.csv").write_bytes(b"\xff\xfe")
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    for note in ("metrics.csv: line 6 is incomplete", "remedies.csv left out:"):
        assert note in result.stdout.replace("\n", " ") and note in page


def test_a_torn_last_row_of_layer_stats_is_left_out(run):
    stats = run / "layer_stats.csv"
    text = stats.read_text(encoding="utf-8")
    stats.write_text(text + "4,1,0.01", encoding="utf-8")
    data = load_run(run)
    assert data.steps == [0, 1, 2, 3] and len(data.layers) == len(text.splitlines()) - 1
    assert any(f"layer_stats.csv: line {len(text.splitlines()) + 1} is incomplete" in n for n in data.notes)


def test_a_short_row_before_the_last_is_damage_not_a_tear(run):
    metrics = run / "metrics.csv"
    rows = lines(metrics)
    rows[2] = "1,1,0.7"
    metrics.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_bad_input(invoke("report", run), "metrics.csv", "line 3", "3 fields", "header has 12")


# --------------------------------------------------------------------------- damaged tables


def test_a_text_cell_in_layer_stats_names_the_file_column_and_line(run):
    stats = run / "layer_stats.csv"
    rows = lines(stats)
    cells = rows[3].split(",")
    cells[6] = "oops"  # delta_norm
    rows[3] = ",".join(cells)
    stats.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_bad_input(invoke("report", run), "layer_stats.csv", "'delta_norm'", "line 4", "'oops'", "not a number")


def test_a_text_layer_id_names_the_file_column_and_line(run):
    stats = run / "layer_stats.csv"
    rows = lines(stats)
    rows[2] = rows[2].replace("0,2,", "0,two,", 1)
    stats.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_bad_input(invoke("report", run), "layer_stats.csv", "'layer'", "line 3", "'two'", "whole number")


def test_duplicate_step_and_layer_rows_name_both_lines(run):
    stats = run / "layer_stats.csv"
    rows = lines(stats)
    stats.write_text("\n".join(rows + [rows[1]]) + "\n", encoding="utf-8")
    assert_bad_input(invoke("report", run), "layer_stats.csv", "step 0, layer 1", f"lines 2 and {len(rows) + 1}")


def cell(text: str, line: int, column: int, value: str) -> str:
    """``text`` with one CSV cell replaced (line and column counted from 0)."""
    rows = [row.split(",") for row in text.splitlines()]
    rows[line][column] = value
    return "\n".join(",".join(row) for row in rows) + "\n"


DAMAGE = {
    "a text loss": ("metrics.csv", lambda t: cell(t, 2, t.split("\n", 1)[0].split(",").index("loss"), "hello"), ["metrics.csv", "'loss'", "line 3", "'hello'"]),
    "a fractional step": ("metrics.csv", lambda t: t.replace("\n1,1,", "\n1.5,1,", 1),
                          ["metrics.csv", "'step'", "line 3", "1.5", "whole number"]),
    "layer 0": ("layer_stats.csv", lambda t: t.replace("\n0,1,", "\n0,0,", 1),
                ["layer_stats.csv", "'layer'", "line 2", "at least 1"]),
    "a text steps count": ("summary.json", lambda t: t.replace('"steps": 4', '"steps": "many"'),
                           ["summary.json", "'steps'", '"many"', "whole number"]),
    "a text loss in the summary": ("summary.json",
                                   lambda t: t.replace('"final_train_loss": ', '"final_train_loss": "x", "_": '),
                                   ["summary.json", "'final_train_loss'", "number or null"]),
    "a number as status": ("summary.json", lambda t: t.replace('"status": "completed"', '"status": 5'),
                           ["summary.json", "'status'", "text"]),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_files_are_bad_input(run, case):
    name, damage, fragments = DAMAGE[case]
    path = run / name
    damaged = damage(path.read_text(encoding="utf-8"))
    assert damaged != path.read_text(encoding="utf-8")
    path.write_text(damaged, encoding="utf-8")
    assert_bad_input(invoke("report", run), *fragments)


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_an_unreadable_params_init_is_a_note(run, content):
    """params_init.npz only feeds the theory table and the update size: without it the report goes on."""
    path = run / "params_init.npz"
    if content is None:
        np.savez(path, **{"dense1.W": np.array([{}], dtype=object)})
    else:
        path.write_bytes(content)
    rep = report(run, write=False)
    assert any(n.startswith("params_init.npz: not readable") for n in rep.notes), rep.notes
    assert rep.theory["theory"] == "params_init.npz not readable"


def test_non_finite_and_huge_metrics_still_report(run):
    metrics = run / "metrics.csv"
    head = lines(metrics)[0]
    names = ("step", "epoch", "loss", "grad_norm", "grad_norm_clipped", "clipped", "lr", "val_loss")
    rows = [(0, 0, "1e308", "1e308", "1e308", 0, 0.1, "1e308"), (1, 1, "inf", "inf", "inf", 1, 0.1, ""),
            (2, 2, "nan", "nan", "nan", 0, 0.1, ""), (3, 3, "-1e-320", 0, 0, 0, 0.1, "")]
    columns = head.split(",")  # whatever else the header holds (time, update_norm, ...) is left blank
    body = "".join(",".join(str(dict(zip(names, row)).get(c, "")) for c in columns) + "\n" for row in rows)
    metrics.write_text(f"{head}\n{body}", encoding="utf-8")
    assert report(run, write=False).findings[0]["kind"] == "exploding"


def test_a_damaged_run_inside_a_sweep_is_a_note(run, tmp_path):
    (run / "summary.json").write_text('{"status": "compl', encoding="utf-8")
    folder = sweep_of(run, tmp_path)
    (note,) = report(folder, write=False).notes
    assert note.startswith("depth=2: not diagnosed:") and "summary.json" in note


def test_a_sweep_row_naming_a_folder_outside_is_not_read(run, tmp_path):
    folder = sweep_of(run, tmp_path)
    summary = folder / "summary.csv"
    summary.write_text(summary.read_text(encoding="utf-8").replace(",depth=2", ",../sweep/depth=2"), encoding="utf-8")
    rep = report(folder, write=False)
    assert rep.findings == [] and "not a folder name" in rep.notes[0]


@pytest.mark.parametrize("spec, key", [("seeds: 5\n", "'seeds' holds int 5"), ("grid: hello\n", "'grid' holds str")])
def test_a_sweep_spec_of_the_wrong_shape_is_bad_input(run, tmp_path, spec, key):
    folder = sweep_of(run, tmp_path)
    (folder / "sweep.yaml").write_text("name: s\n" + spec, encoding="utf-8")
    assert_bad_input(invoke("report", folder), "sweep.yaml", key)


def test_a_torn_last_row_of_a_sweep_summary_is_a_note(run, tmp_path):
    folder = sweep_of(run, tmp_path)
    with open(folder / "summary.csv", "a", encoding="utf-8") as f:
        f.write("3,compl")
    assert "summary.csv: line 3 is incomplete" in report(folder, write=False).notes[0]


def test_a_config_that_does_not_validate_is_left_out_with_a_note(run):
    config = run / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("depth: 2", "depth: -2"), encoding="utf-8")
    data = load_run(run)
    assert data.config is None and data.raw["model"]["depth"] == -2
    (note,) = data.notes
    assert note.startswith("config.yaml left out (") and "model.depth" in note


def test_planted_input_links_and_fifos_are_refused_not_read(run, tmp_path):
    """A run folder never holds a link (gradlab writes none): config.yaml linked to a file of yours would be
    shown in report.html, and a FIFO or /dev/zero would be read until memory ran out."""
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: my-password\n", encoding="utf-8")
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(secret)
    assert_bad_input(invoke("report", run), "config.yaml", "symbolic link", "does not follow")
    (run / "config.yaml").unlink()
    (run / "summary.json").unlink()
    os.mkfifo(run / "summary.json")
    assert_bad_input(invoke("report", run), "summary.json", "not a regular file")
    assert not (run / "report.html").exists()


def test_a_first_loss_of_zero_is_not_divided_by(run):
    """Found by damaging cells at random: the 'ended at 10x its first loss' reason divided by a first loss of 0."""
    metrics = run / "metrics.csv"
    metrics.write_text(cell(metrics.read_text(encoding="utf-8"), 1, 2, "0"), encoding="utf-8")
    assert [f["kind"] for f in report(run, write=False).findings] == ["not_learning"]


def test_a_fifo_planted_in_a_trial_folder_is_not_opened(tmp_path):
    """report --try reads its earlier trials' summary.json and config.yaml as report reads a run: a FIFO
    there (open() would wait for a writer forever) is refused, and the trial counts as not run yet."""
    from gradlab.report import trial

    folder = tmp_path / "trial"
    folder.mkdir()
    os.mkfifo(folder / "summary.json")
    (folder / "config.yaml").write_text("name: x\n", encoding="utf-8")
    assert trial._summary(folder) is None
    assert trial._same_run(folder, combo=None) is False
