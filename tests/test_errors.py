"""Every effhub error names the problem and the fix, and stays catchable as its built-in base."""

import pytest

from effhub import errors


@pytest.mark.parametrize("name", errors.__all__)
def test_error_message_has_problem_and_fix(name):
    error_type = getattr(errors, name)
    error = error_type("The thing is broken", "do this instead")
    assert str(error) == "The thing is broken. Fix: do this instead"
    assert error.problem == "The thing is broken" and error.fix == "do this instead"
    assert isinstance(error, errors.EffhubError)


def test_builtin_bases():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.DatasetError, FileNotFoundError)
    assert issubclass(errors.CheckpointError, OSError)
    assert issubclass(errors.UnknownMethodError, KeyError)


def test_cli_prints_one_clear_line(capsys):
    from effhub.cli import main

    assert main(["train", "tiny", "--recipe", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("effhub: error: Unknown recipe 'nope'") and "Fix:" in err
