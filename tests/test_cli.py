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
