"""Turning the bundled HR exports (roster and job history) into person events."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import workers
from rules.person_state import PersonState, apply_event
from rules.segments import condition_matches
from schemas.person import PersonEvent, PersonSnapshot, PersonUpdated
from schemas.segments import Condition, Operator
from workers import cli
from workers.errors import HRFileError
from workers.hr_files import (
    JOB_ATTRIBUTES,
    RejectedRow,
    history_events,
    read_roster,
    snapshot_events,
)

DATA = Path(workers.__file__).parent / "data"
EMPLOYEES = DATA / "employees.csv"
JOB_HISTORY = DATA / "job_history.csv"
REPLAYED_AT = datetime(2025, 1, 1, tzinfo=UTC)

CsvFactory = Callable[[str, str], Path]


@pytest.fixture
def csv_factory(tmp_path: Path) -> CsvFactory:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture(scope="module")
def roster() -> dict[str, dict[str, Any]]:
    return read_roster(EMPLOYEES)


@pytest.fixture(scope="module")
def history(
    roster: dict[str, dict[str, Any]],
) -> tuple[list[PersonUpdated], list[RejectedRow]]:
    return history_events(JOB_HISTORY, roster, replayed_at=REPLAYED_AT)


def test_roster_holds_107_persons_by_employee_id(roster: dict[str, Any]) -> None:
    assert len(roster) == 107
    assert min(roster, key=int) == "100"
    assert all(isinstance(person_id, str) for person_id in roster)


def test_roster_renames_columns_and_types_cells(roster: dict[str, Any]) -> None:
    assert roster["176"] == {
        "hire_date": "2016-03-24",
        "job_id": "SA_REP",
        "title": "Sales Representative",
        "salary": 8600,
        "commission_pct": 0.2,
        "manager_id": "149",
        "department_id": "80",
        "department": "Sales",
    }


def test_roster_leaves_out_empty_cells(roster: dict[str, Any]) -> None:
    president = roster["100"]
    assert "manager_id" not in president
    assert "commission_pct" not in president
    assert president["title"] == "President"


def test_roster_accepts_a_person_id_column(csv_factory: CsvFactory) -> None:
    path = csv_factory(
        "people.csv",
        """
        person_id,title,grade,cost_center_id,start_date
        007, Agent ,  3 ,0042,2024-01-01
        008,,,,
        """,
    )
    assert read_roster(path) == {
        "007": {
            "title": "Agent",
            "grade": 3,
            "cost_center_id": "0042",
            "start_date": "2024-01-01",
        },
        "008": {},
    }


def test_roster_keeps_as_text_what_only_python_reads_as_a_number(
    csv_factory: CsvFactory,
) -> None:
    # float() reads "Nan" and "inf", which JSON cannot carry, and "1_000".
    path = csv_factory(
        "people.csv",
        """
        person_id,first_name,last_name,code,huge,grade,rate
        1,Nan,Inf,1_000,1e999,-3,.25
        """,
    )
    assert read_roster(path) == {
        "1": {
            "first_name": "Nan",
            "last_name": "Inf",
            "code": "1_000",
            "huge": "1e999",
            "grade": -3,
            "rate": 0.25,
        }
    }


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("24000", 24000),
        ("0", 0),
        ("-3", -3),
        ("0.15", 0.15),
        # The Oracle HR sample writes its commissions so.
        (".20", 0.2),
        ("-0.5", -0.5),
        # Trailing zeros are how a spreadsheet writes an amount, not a code.
        ("8600.00", 8600.0),
        ("0042", "0042"),
        ("02134", "02134"),
        ("00", "00"),
        ("-042", "-042"),
        ("007.5", "007.5"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        ("2.5e-1", "2.5e-1"),
        ("+1", "+1"),
        ("1.", "1."),
        ("1_000", "1_000"),
        ("\u0664\u0662", "\u0664\u0662"),
        ("9" * 5000, "9" * 5000),
    ],
)
def test_roster_makes_numbers_only_of_plain_decimals(
    csv_factory: CsvFactory, cell: str, value: Any
) -> None:
    path = csv_factory("people.csv", f"person_id,cost_center\n1,{cell}\n")
    assert read_roster(path) == {"1": {"cost_center": value}}


def test_a_code_with_leading_zeros_keeps_its_text_for_segments(
    csv_factory: CsvFactory,
) -> None:
    path = csv_factory(
        "people.csv", "person_id,cost_center,postal_code\n1,0042,02134\n"
    )
    attributes = read_roster(path)["1"]
    for attribute, code in (("cost_center", "0042"), ("postal_code", "02134")):
        condition = Condition(attribute=attribute, operator=Operator.EQ, value=code)
        assert condition_matches(condition, attributes, date(2025, 1, 1))


def test_roster_reads_a_spreadsheets_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes("employee_id,title\n1,Engineer\n".encode("utf-8-sig"))
    assert read_roster(path) == {"1": {"title": "Engineer"}}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("employee_id,title\n1,A\n,B\n", "line 3: no employee_id"),
        (
            "employee_id,title\n1,A\n2,B\n 1 ,C\n",
            "line 4: employee_id '1' is already on line 2",
        ),
    ],
)
def test_roster_rows_without_an_id_of_their_own_are_refused(
    csv_factory: CsvFactory, text: str, problem: str
) -> None:
    path = csv_factory("people.csv", text)
    with pytest.raises(HRFileError, match=problem):
        read_roster(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("employee_id,title\n1,A,B\n", "line 2: expected 2 cells .*, got 3"),
        (
            "employee_id,hire_date,title\n905,2018-01-01,A\n906,2018-01-01\n",
            "line 3: expected 3 cells .*, got 2",
        ),
        ("employee_id,hire_date,title\n907\n", "line 2: expected 3 cells .*, got 1"),
    ],
)
def test_a_roster_row_of_the_wrong_size_is_refused(
    csv_factory: CsvFactory, text: str, problem: str
) -> None:
    path = csv_factory("people.csv", text)
    with pytest.raises(HRFileError, match=rf"^roster .*people\.csv {problem}"):
        read_roster(path)


def test_a_history_row_of_the_wrong_size_is_refused(csv_factory: CsvFactory) -> None:
    path = csv_factory(
        "history.csv",
        HISTORY_HEADER
        + "1,2020-01-01,2020-06-30,J,T,1,D\n1,2020-07-01,2020-12-31,J,T,1,D,extra\n",
    )
    with pytest.raises(
        HRFileError,
        match=r"^job history .*history\.csv line 3: expected 7 cells .*got 8",
    ):
        history_events(path, {"1": {}}, replayed_at=REPLAYED_AT)


def test_blank_lines_are_no_rows(csv_factory: CsvFactory) -> None:
    path = csv_factory("people.csv", "employee_id,title\n1,A\n\n2,B\n\n")
    assert read_roster(path) == {"1": {"title": "A"}, "2": {"title": "B"}}


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "employee_id,title,job_title",
            "the columns 'title' and 'job_title' both give the attribute 'title'",
        ),
        (
            "employee_id,department_name,department",
            "the columns 'department_name' and 'department' both give the attribute",
        ),
        ("employee_id,grade,grade", "the header has the column 'grade' twice"),
    ],
)
def test_a_roster_with_two_columns_for_one_attribute_is_refused(
    csv_factory: CsvFactory, header: str, problem: str
) -> None:
    path = csv_factory("people.csv", f"{header}\n1,A,B\n")
    with pytest.raises(HRFileError, match=rf"^roster .*people\.csv: {problem}"):
        read_roster(path)


def test_a_history_with_a_column_twice_is_refused(csv_factory: CsvFactory) -> None:
    path = csv_factory(
        "history.csv",
        HISTORY_HEADER.replace("job_id", "job_id,job_id")
        + "1,2020-01-01,2020-12-31,J,K,T,1,D\n",
    )
    with pytest.raises(HRFileError, match="the header has the column 'job_id' twice"):
        history_events(path, {"1": {}}, replayed_at=REPLAYED_AT)


@pytest.mark.parametrize("column", ["hire_date", "termination_date"])
@pytest.mark.parametrize(
    "text",
    [
        "17/06/2018",
        "2018-06-01T23:30:00-05:00",
        "2018-06-01 00:00",
        "20180601",
        "2018-W22-5",
        "2018-02-30",
        "2018-6-1",
    ],
)
def test_a_roster_date_that_is_not_yyyy_mm_dd_is_refused(
    csv_factory: CsvFactory, column: str, text: str
) -> None:
    path = csv_factory(
        "people.csv", f"employee_id,{column}\n905,2018-06-01\n906,{text}\n"
    )
    with pytest.raises(HRFileError) as refused:
        read_roster(path)
    assert str(refused.value) == (
        f"roster {path} line 3: {column} of person '906' is {text!r};"
        " expected a yyyy-mm-dd date"
    )


def test_roster_keeps_dates_as_yyyy_mm_dd_text(csv_factory: CsvFactory) -> None:
    path = csv_factory(
        "people.csv", "employee_id,hire_date,termination_date\n1, 2018-06-17 ,\n"
    )
    assert read_roster(path) == {"1": {"hire_date": "2018-06-17"}}


@pytest.mark.parametrize("hired", ["17/06/2018", "2018-06-01T23:30:00-05:00", 2018])
def test_history_refuses_a_roster_hire_date_that_is_not_a_date(
    csv_factory: CsvFactory, hired: Any
) -> None:
    path = csv_factory(
        "history.csv", HISTORY_HEADER + "1,2020-01-01,2020-12-31,J,T,1,D\n"
    )
    with pytest.raises(
        HRFileError,
        match=rf"^roster: hire_date of person '1' is {str(hired)!r}; expected a yyyy",
    ):
        history_events(path, {"1": {"hire_date": hired}}, replayed_at=REPLAYED_AT)


def test_history_command_reports_a_bad_roster_hire_date_in_one_line(
    csv_factory: CsvFactory, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for name in list(os.environ):
        if name.startswith("MENTORFLOW_"):
            monkeypatch.delenv(name)
    # Both URLs set: the command needs no running stack to read the files.
    monkeypatch.setenv("MENTORFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("MENTORFLOW_POSTGRES_URL", "postgresql://u@127.0.0.1:9/db")
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    roster = csv_factory("people.csv", "employee_id,hire_date\n906,17/06/2018\n")
    history = csv_factory(
        "history.csv", HISTORY_HEADER + "906,2019-01-01,2019-12-31,J,T,1,D\n"
    )

    status = cli.main(["history", str(history), "--roster", str(roster)])

    assert status == 1
    assert capsys.readouterr().err == (
        f"mentorflow: roster {roster} line 2: hire_date of person '906' is"
        " '17/06/2018'; expected a yyyy-mm-dd date\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "employee_id,title\n1,Eng\x00ineer\n",
            "person '1': attributes.title contains a NUL",
        ),
        (
            f"employee_id,title\n{'7' * 201},A\n",
            "person_id: String should have at most",
        ),
    ],
)
def test_a_roster_row_that_makes_no_valid_event_is_refused_naming_the_person(
    csv_factory: CsvFactory, text: str, problem: str
) -> None:
    roster = read_roster(csv_factory("people.csv", text))
    with pytest.raises(HRFileError, match=f"^roster: .*{problem}"):
        snapshot_events(roster)


def test_a_history_row_that_makes_no_valid_event_is_refused_naming_the_person(
    csv_factory: CsvFactory,
) -> None:
    path = csv_factory(
        "history.csv", HISTORY_HEADER + "1,2020-01-01,2020-12-31,J,T\x00,1,D\n"
    )
    with pytest.raises(
        HRFileError, match=r"person '1' on 2020-01-01: changes\.title contains a NUL"
    ):
        history_events(path, {"1": {}}, replayed_at=REPLAYED_AT)


def test_a_roster_or_history_that_is_not_utf8_is_refused_with_its_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("employee_id,title\n1,Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(HRFileError, match=r"roster .*latin1\.csv is not UTF-8 text"):
        read_roster(path)
    with pytest.raises(HRFileError, match=r"history .*latin1\.csv is not UTF-8 text"):
        history_events(path, {}, replayed_at=REPLAYED_AT)


def test_roster_without_an_id_column_is_refused(csv_factory: CsvFactory) -> None:
    path = csv_factory("people.csv", "name,title\nAda,Engineer\n")
    with pytest.raises(HRFileError, match="no person_id or employee_id column"):
        read_roster(path)


def test_an_empty_roster_is_refused(csv_factory: CsvFactory) -> None:
    path = csv_factory("people.csv", "")
    with pytest.raises(HRFileError, match="is empty; expected a header row"):
        read_roster(path)


def test_a_missing_roster_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(HRFileError, match=r"cannot read the roster .*absent\.csv"):
        read_roster(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("employee_id,start_date\n1,2020-01-01\n", "lacks the columns"),
        (
            "{header}1,2020-13-01,2020-12-31,J,T,1,D\n",
            "line 2: start_date of person '1' is '2020-13-01'; expected a yyyy-mm-dd",
        ),
        (
            "{header}1,2020-01-01,20201231,J,T,1,D\n",
            "line 2: end_date of person '1' is '20201231'; expected a yyyy-mm-dd",
        ),
        (
            "{header}1,2020-01-01T00:00:00Z,2020-12-31,J,T,1,D\n",
            "line 2: start_date of person '1' is '2020-01-01T00:00:00Z'",
        ),
        ("", "is empty; expected a header row"),
    ],
)
def test_an_unreadable_history_is_refused_with_the_reason(
    csv_factory: CsvFactory, text: str, problem: str
) -> None:
    path = csv_factory("history.csv", text.replace("{header}", HISTORY_HEADER))
    with pytest.raises(HRFileError, match=problem):
        history_events(path, {"1": {}}, replayed_at=REPLAYED_AT)


def test_history_orders_text_ids_after_numeric_ones(csv_factory: CsvFactory) -> None:
    roster: dict[str, dict[str, Any]] = {"E7": {}, "10": {}, "9": {}}
    rows = "".join(f"{p},2020-01-01,2020-01-31,J,T,1,D\n" for p in ("E7", "10", "9"))
    path = csv_factory("history.csv", HISTORY_HEADER + rows)
    events, _ = history_events(path, roster, replayed_at=REPLAYED_AT)
    assert [e.person_id for e in events[:3]] == ["9", "10", "E7"]


def test_snapshots_give_one_event_per_person_at_one_instant(
    roster: dict[str, Any],
) -> None:
    events = snapshot_events(roster, occurred_at=REPLAYED_AT)
    assert len(events) == 107
    assert all(isinstance(event, PersonSnapshot) for event in events)
    assert {event.occurred_at for event in events} == {REPLAYED_AT}
    assert len({event.event_id for event in events}) == 107
    by_person = {event.person_id: event.attributes for event in events}
    assert by_person == roster


def test_history_rejects_the_four_rows_before_the_hire_date(
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    _, rejected = history
    assert rejected == [
        RejectedRow("101", "2007-09-21", "starts before the hire date 2015-09-21"),
        RejectedRow("101", "2011-10-28", "starts before the hire date 2015-09-21"),
        RejectedRow("200", "2005-09-17", "starts before the hire date 2013-09-17"),
        RejectedRow("200", "2012-07-01", "starts before the hire date 2013-09-17"),
    ]


def test_history_gives_eleven_job_changes_in_chronological_order(
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    events, _ = history
    assert [(e.effective_at, e.person_id, e.changes["job_id"]) for e in events] == [
        (date(2011, 1, 13), "102", "IT_PROG"),
        (date(2014, 2, 17), "201", "MK_REP"),
        (date(2016, 3, 24), "114", "ST_CLERK"),
        (date(2016, 3, 24), "176", "SA_REP"),
        (date(2016, 7, 25), "102", "AD_VP"),
        (date(2017, 1, 1), "122", "ST_CLERK"),
        (date(2017, 1, 1), "176", "SA_MAN"),
        (date(2017, 12, 20), "201", "MK_MAN"),
        (date(2018, 1, 1), "114", "PU_MAN"),
        (date(2018, 1, 1), "122", "ST_MAN"),
        (date(2018, 1, 1), "176", "SA_REP"),
    ]


def test_history_stamps_later_changes_with_later_instants(
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    events, _ = history
    assert [e.occurred_at for e in events] == [
        REPLAYED_AT + timedelta(milliseconds=rank) for rank in range(11)
    ]
    assert len({e.event_id for e in events}) == 11


def test_every_change_replaces_the_whole_job(
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    events, _ = history
    assert all(set(e.changes) == set(JOB_ATTRIBUTES) for e in events)
    assert events[0].changes == {
        "job_id": "IT_PROG",
        "title": "Programmer",
        "department_id": "60",
        "department": "IT",
    }


def test_each_persons_final_change_restores_the_rosters_current_job(
    roster: dict[str, dict[str, Any]],
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    events, _ = history
    last: dict[str, PersonUpdated] = {}
    for event in events:
        last[event.person_id] = event
    assert sorted(last) == ["102", "114", "122", "176", "201"]
    for person_id, event in last.items():
        current = {name: roster[person_id][name] for name in JOB_ATTRIBUTES}
        assert event.changes == current, person_id


def test_replaying_snapshots_then_history_ends_on_the_roster(
    roster: dict[str, dict[str, Any]],
    history: tuple[list[PersonUpdated], list[RejectedRow]],
) -> None:
    events, _ = history
    states: dict[str, PersonState] = {}
    snapshots = snapshot_events(roster, occurred_at=REPLAYED_AT - timedelta(days=1))
    replay: list[PersonEvent] = [*snapshots, *events]
    for event in replay:
        transition = apply_event(states.get(event.person_id), event)
        assert transition.applied, event
        states[event.person_id] = transition.state
    assert {pid: dict(state.attributes) for pid, state in states.items()} == roster


HISTORY_HEADER = (
    "employee_id,start_date,end_date,job_id,job_title,department_id,department_name\n"
)


def test_history_rejects_inverted_overlapping_and_unknown_rows(
    csv_factory: CsvFactory,
) -> None:
    roster = {
        "1": {"hire_date": "2020-01-01", "job_id": "NOW", "title": "Now"},
        "2": {"job_id": "B", "title": "Bee"},
    }
    path = csv_factory(
        "history.csv",
        HISTORY_HEADER
        + textwrap.dedent(
            """
            1,2020-06-01,2020-12-31,J2,Second,10,Ten
            1,2020-01-01,2020-06-01,J1,First,10,Ten
            1,2021-03-01,2021-02-01,J3,Backwards,10,Ten
            2,2019-01-01,2019-12-31,A,Ay,20,Twenty
            9,2019-01-01,2019-12-31,X,Ex,30,Thirty
            """
        ).lstrip(),
    )
    events, rejected = history_events(path, roster, replayed_at=REPLAYED_AT)
    assert rejected == [
        RejectedRow("1", "2020-06-01", "overlaps the job that ended 2020-06-01"),
        RejectedRow("1", "2021-03-01", "ends 2021-02-01 before it starts"),
        RejectedRow("9", "2019-01-01", "person is not in the roster"),
    ]
    assert [(e.person_id, e.effective_at, e.changes["job_id"]) for e in events] == [
        ("2", date(2019, 1, 1), "A"),
        # on one day, persons come in numeric order
        ("1", date(2020, 1, 1), "J1"),
        ("2", date(2020, 1, 1), "B"),
        ("1", date(2020, 6, 2), "NOW"),
    ]
    # An attribute the roster lacks is cleared by the change back to it.
    assert events[2].changes["department"] is None


def test_history_orders_ids_that_only_look_like_digits_as_text(
    csv_factory: CsvFactory,
) -> None:
    # "²" is a digit to str.isdigit, but no number to int().
    path = csv_factory(
        "history.csv",
        HISTORY_HEADER
        + "²,2020-01-01,2020-12-31,J,T,1,D\n10,2020-01-01,2020-12-31,J,T,1,D\n"
        + "9,2020-01-01,2020-12-31,J,T,1,D\n",
    )
    roster = {person: {"hire_date": "2019-01-01"} for person in ("²", "10", "9")}

    events, _ = history_events(path, roster, replayed_at=REPLAYED_AT)

    first_day = [e.person_id for e in events if e.effective_at == date(2020, 1, 1)]
    assert first_day == ["9", "10", "²"]
