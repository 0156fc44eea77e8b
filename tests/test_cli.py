"""`jaxattr` command line: parsing and clear errors (the study itself is tested in tests/study)."""

import pytest

from jaxattr import cli


def test_help_lists_the_paper_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["study", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--dataset", "--folds", "--decays", "--groups", "--methods", "--quick", "--out"):
        assert option in text


@pytest.mark.parametrize("argv, match", [
    (["study", "--methods", "gradient,telepathy", "--out", "{tmp}"], "unknown methods"),
    (["study", "--groups", "B9", "--out", "{tmp}"], "unknown groups"),
    (["study", "--folds", "1", "--out", "{tmp}"], "folds"),
])
def test_bad_options_exit_2_with_a_message(argv, match, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    assert match in capsys.readouterr().err


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["study", "--quick", "--out", str(blocker / "sub")]) == 2
    assert "error" in capsys.readouterr().err


def test_bad_decay_list_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["study", "--decays", "0,lots", "--out", "x"])
    assert "expected numbers" in capsys.readouterr().err


# ---------------------------------------------------------------- issue #22: silent CLI surprises


@pytest.fixture
def no_study(monkeypatch):
    """Replace the study itself: these tests are about parsing and messages (and must fail fast
    on code that would otherwise start training)."""
    from jaxattr.study import runner

    calls = []
    monkeypatch.setattr(runner, "run_study", lambda config, out, **kwargs: calls.append(config) or None)
    return calls


def test_empty_methods_is_refused_not_a_random_only_study(tmp_path, capsys, no_study):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["study", "--methods", "", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--methods: expected one or more names" in capsys.readouterr().err
    assert no_study == []
    from jaxattr.study.runner import study_config

    with pytest.raises(ValueError, match="methods must name one or more methods"):
        study_config(methods=())


@pytest.mark.parametrize("value", ["0", "-3"])
def test_eval_size_zero_is_refused_not_read_as_all(value, tmp_path, capsys, no_study):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["study", "--eval-size", value, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--eval-size: expected a positive integer" in capsys.readouterr().err
    assert no_study == []
    from jaxattr.study.runner import study_config

    with pytest.raises(ValueError, match="eval_size must be None"):
        study_config(eval_size=0)


def test_help_names_each_real_default_once_without_rst_markup(capsys):
    for argv in (["--help"], ["study", "--help"], ["report", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and "(default: None)" not in text and "(default: False)" not in text, argv
    with pytest.raises(SystemExit):
        cli.main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in [("--dataset", "digits"), ("--folds", "10"), ("--steps", "10"), ("--region", "1"),
                            ("--perturbation", "uniform"), ("--epochs", "100"), ("--groups", "B1,B2,B3,D1,D2,B,D,A")]:
        assert f"(default: {default}" in text.split(option, 2)[2].split("--", 1)[0], option
    assert text.count("default") == text.count("(default:") + text.count("Every default")


def test_report_on_a_study_without_finished_units_says_so(tmp_path, capsys):
    from jaxattr.study.runner import QUICK, study_config
    from jaxattr.study.store import ResultsStore

    ResultsStore(tmp_path, study_config(**QUICK))
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished unit yet (0 of 6 units evaluated)" in err
    assert "dataset" not in err  # before: "dataset 'digits' is not in the results (datasets: [])"


def test_another_configuration_names_the_differing_option(tmp_path, capsys):
    from jaxattr.study.runner import QUICK, study_config
    from jaxattr.study.store import ResultsStore

    ResultsStore(tmp_path, study_config(**QUICK))
    assert cli.main(["study", "--quick", "--steps", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "perturbation.steps: stored 10, requested 5" in err
    assert "'region'" not in err and "epochs" not in err


def test_ctrl_c_exits_130_with_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    from jaxattr.study import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def main(argv):
        try:
            return cli.main(argv)
        except KeyboardInterrupt:  # before: the traceback (caught here so pytest itself goes on)
            pytest.fail("Ctrl-C escaped jaxattr's main with a traceback")

    monkeypatch.setattr(runner, "run_study", interrupted)
    assert main(["study", "--quick", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    runner.ResultsStore(tmp_path, runner.study_config(**runner.QUICK))
    monkeypatch.setattr(runner, "make_report", interrupted)
    assert main(["report", str(tmp_path)]) == 130
    assert "jaxattr report: interrupted" in capsys.readouterr().err
