"""The YAML files gradlab writes (a run's config.yaml, a sweep's sweep.yaml) read back as they were written:
a name like 1e5 or 0E0, which a YAML 1.2 loader takes for a float when it stands unquoted, stays a string."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.config import load_config, parse_yaml

TINY = ("name: '{name}'\ndata: {{kind: spirals, n_samples: 64}}\nmodel: {{depth: 2, width: 4, activation: tanh}}\n"
        "train: {{steps: 2}}\n")


@pytest.mark.parametrize("name", ["1e5", "0E0", "1_000"])
def test_a_run_named_like_a_number_trains_reports_and_reloads(tmp_path, name):
    (tmp_path / "t.yaml").write_text(TINY.format(name=name), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.yaml"), "-q", "--report",
                                      "--set", f"log.out={tmp_path / 'runs'}"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert parse_yaml((run / "config.yaml").read_text(encoding="utf-8"), "config.yaml")["name"] == name
    assert load_config(run / "config.yaml").name == name
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["status"] == "completed"


def test_a_sweep_named_like_a_number_resumes(tmp_path):
    (tmp_path / "base.yaml").write_text(TINY.format(name="b"), encoding="utf-8")
    (tmp_path / "s.yaml").write_text("name: '1e5'\nbase: base.yaml\ngrid: {model.width: [3, 4]}\n", encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(app, ["sweep", str(tmp_path / "s.yaml"), "-q", "--workers", "1",
                                "--set", f"log.out={tmp_path / 'runs'}"])
    assert first.exit_code == 0, first.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert parse_yaml((folder / "sweep.yaml").read_text(encoding="utf-8"), "sweep.yaml")["name"] == "1e5"
    again = runner.invoke(app, ["sweep", "--resume", str(folder), "-q"])
    assert again.exit_code == 0, again.output
