"""``gradlab train`` prints the model in one line first; ``--watch`` draws the watch view in place of the
progress bar, and the tables that follow start on a line of their own."""
from __future__ import annotations

from typer.testing import CliRunner

from gradlab.cli import app

TINY = ("name: tiny\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 3, width: 8, activation: tanh}\n"
        "train: {steps: 6, batch_size: 16}\nlog: {every: 1}\n")


def run(tmp_path, *args):
    (tmp_path / "t.yaml").write_text(TINY, encoding="utf-8")
    return CliRunner().invoke(app, ["train", str(tmp_path / "t.yaml"), "--set", f"log.out={tmp_path / 'runs'}", *args])


def test_the_model_line_comes_first_with_its_parameter_count(tmp_path):
    result = run(tmp_path)
    assert result.exit_code == 0, result.output
    # spirals: 2 inputs, 2 classes (its default); 3 hidden layers of 8: (2*8+8) + 2*(8*8+8) + (8*2+2) = 186
    assert result.stdout.splitlines()[0] == "model: MLP 2 -> 8 x 3 tanh (xavier_normal) -> 2, 186 parameters"


def test_watch_draws_the_view_instead_of_the_progress_bar(tmp_path):
    result = run(tmp_path, "--watch")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("╰"))
    assert set(lines[end][1:-1]) == {"─"}, lines[end]  # the view's last line holds nothing else
    assert "delta_norm" in result.stdout and "diagnosis" in result.stdout
    assert "Gradients by layer" in lines[end + 1]
    assert "train ━" not in result.stdout  # no progress bar beside it
    assert lines[-1].startswith("completed: 6 steps")


def test_watch_and_quiet_together_are_refused(tmp_path):
    from cli_helpers import assert_bad_input

    assert_bad_input(run(tmp_path, "--watch", "--quiet"), "--watch", "--quiet", "give one of them")
    assert not (tmp_path / "runs").exists()
