import pytest

from kotone_pipeline.services.jobs import InvalidIdError, is_terminal, validate_cycle_id, validate_run_id


@pytest.mark.parametrize("cycle_id", ["c1", "nightly-20261125", "a_b-c", "0" * 63])
def test_valid_cycle_ids_pass(cycle_id: str) -> None:
    assert validate_cycle_id(cycle_id) == cycle_id


@pytest.mark.parametrize(
    "cycle_id", ["", "Bad", "-lead", "_lead", "has space", "abc\n", "a/b", "../up", "0" * 64, "é", None, 7]
)
def test_invalid_cycle_ids_are_rejected_with_the_rule(cycle_id: object) -> None:
    with pytest.raises(InvalidIdError, match="invalid cycle id"):
        validate_cycle_id(cycle_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("run_id", ["r0\n", "R0", "", "x" * 32])
def test_invalid_run_ids_are_rejected(run_id: str) -> None:
    with pytest.raises(InvalidIdError):
        validate_run_id(run_id)


@pytest.mark.parametrize(
    ("stage", "terminal"),
    [
        ("COMPLETED", True),
        ("error", True),
        ("CANCELED", True),
        ("DELETED", True),
        ("RUNNING", False),
        ("SCHEDULING", False),
        ("UPDATING", False),
        ("WHATEVER", False),
    ],
)
def test_unknown_stages_count_as_running(stage: str, terminal: bool) -> None:
    assert is_terminal(stage) is terminal
