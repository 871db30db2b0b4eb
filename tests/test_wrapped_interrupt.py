"""A Ctrl-C or SIGTERM that arrives inside a library which wraps it (pydantic: any ``model_dump`` whose serializer
is running) or swallows it (pydantic again: while it looks up a tagged union's discriminator it turns the
exception into a warning and goes on) still stops a command as interrupted, with 130 or 143 and no traceback,
never as a bug (exit 1) nor as a run that completed (exit 0: CI saw that too, a SIGINT during the config's dump).

The signal is really delivered to this process, from inside a real pydantic serializer, as a ``kill`` from
outside lands there when it happens to arrive during ``make_optimizer``'s ``model_dump`` (CI saw it once)."""
from __future__ import annotations

import importlib
import json
import os
import signal
import warnings
from typing import Annotated, Literal, Union

import pytest
from pydantic import BaseModel, Discriminator, Tag, model_serializer
from typer.testing import CliRunner

from gradlab.check import runner as check_runner
from gradlab.cli import app
from gradlab.errors import interrupt_in, interrupts_unwrapped

train_module = importlib.import_module("gradlab.train")  # gradlab.train is also the function

TINY = ("name: tiny\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 2, width: 8, activation: tanh}\n"
        "train: {steps: 5}\n")


class _Signalled(BaseModel):
    """Its serializer sends ``sig`` to this process; Python runs the handler inside the serializer."""
    sig: int

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        os.kill(os.getpid(), self.sig)
        for _ in range(1000):  # the handler runs between two bytecodes of this loop
            pass
        return handler(self)


def dump_with(sig: int) -> None:
    _Signalled(sig=int(sig)).model_dump()


def _discriminate(value):
    os.kill(os.getpid(), value.sig)
    for _ in range(1000):
        pass
    return "s"


class _Sig(BaseModel):
    kind: Literal["s"] = "s"
    sig: int


class _Other(BaseModel):
    kind: Literal["o"] = "o"


class _Tagged(BaseModel):
    """Serializing it calls ``_discriminate``, which sends the signal; pydantic swallows what the handler raises."""
    inner: Annotated[Union[Annotated[_Sig, Tag("s")], Annotated[_Other, Tag("o")]], Discriminator(_discriminate)]


def swallow_with(sig: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _Tagged.model_construct(inner=_Sig(sig=int(sig))).model_dump()


def test_pydantic_swallows_an_interrupt_in_a_discriminator():
    """The premise, on the installed pydantic: the handler runs (Python's own raises KeyboardInterrupt) and
    nothing leaves the dump; only a warning says anything happened."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _Tagged.model_construct(inner=_Sig(sig=int(signal.SIGINT))).model_dump()
    assert any("discriminator" in str(w.message) for w in seen)


def test_pydantic_wraps_the_interrupt_and_it_is_found():
    """The premise, on the installed pydantic: the KeyboardInterrupt leaves as another exception, caused by it."""
    with pytest.raises(Exception) as info:
        dump_with(signal.SIGINT)
    assert not isinstance(info.value, KeyboardInterrupt)
    assert isinstance(interrupt_in(info.value), KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        with interrupts_unwrapped():
            dump_with(signal.SIGINT)


def test_other_errors_pass_through_unchanged():
    assert interrupt_in(ValueError("x")) is None
    with pytest.raises(ValueError, match="plain"):
        with interrupts_unwrapped():
            raise ValueError("plain")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("deliver", ["wrapped", "swallowed"])
def test_train_stopped_inside_a_model_dump_is_interrupted(tmp_path, monkeypatch, sig, code, deliver):
    """Wrapped (raised as another error) or swallowed (a warning only), the signal stops the run at its next
    step: status interrupted, 0 steps, exit 130 or 143, no error.txt."""
    real, signal_in_dump = train_module.make_optimizer, {"wrapped": dump_with, "swallowed": swallow_with}[deliver]

    def make_optimizer(cfg, lr):
        signal_in_dump(sig)
        return real(cfg, lr)

    monkeypatch.setattr(train_module, "make_optimizer", make_optimizer)
    (tmp_path / "t.yaml").write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.yaml"), "-q", "--set", f"log.out={tmp_path / 'runs'}"])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.output.startswith("interrupted: 0 steps")
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "interrupted"
    assert not (run / "error.txt").exists()


@pytest.mark.parametrize("deliver", ["wrapped", "swallowed"])
def test_check_stopped_inside_a_model_dump_is_interrupted(tmp_path, monkeypatch, deliver):
    """Wrapped, the signal stops the check; swallowed, the check ends its work (nothing in it looks) and the
    command then exits 143, not 0."""
    real, signal_in_dump = check_runner.prepare, {"wrapped": dump_with, "swallowed": swallow_with}[deliver]

    def prepare(*args, **kwargs):
        signal_in_dump(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(check_runner, "prepare", prepare)
    (tmp_path / "t.yaml").write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(tmp_path / "t.yaml")])
    assert result.exit_code == 143, result.output
    assert "Traceback" not in result.output and "terminated (SIGTERM)" in result.output


def test_train_swallowed_signal_during_the_final_metrics_is_interrupted(tmp_path, monkeypatch):
    real = train_module.final_metrics

    def final_metrics(s):
        swallow_with(signal.SIGINT)
        return real(s)

    monkeypatch.setattr(train_module, "final_metrics", final_metrics)
    (tmp_path / "t.yaml").write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.yaml"), "-q", "--set", f"log.out={tmp_path / 'runs'}"])
    assert result.exit_code == 130, result.output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "interrupted" and summary["steps"] == 5


def test_a_signal_to_one_command_does_not_stop_the_next(tmp_path, monkeypatch):
    test_check_stopped_inside_a_model_dump_is_interrupted(tmp_path, monkeypatch, "swallowed")
    monkeypatch.undo()
    (tmp_path / "t.yaml").write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "t.yaml"), "-q", "--set", f"log.out={tmp_path / 'runs2'}"])
    assert result.exit_code == 0, result.output
