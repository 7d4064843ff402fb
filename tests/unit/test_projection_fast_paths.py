"""The short cuts of the read path give exactly what the plain ways give."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.event_reader import uuid_of_hex
from projections.task_rows import (
    COLUMNS,
    CREATED,
    END,
    LEASE,
    NULLABLE,
    START,
    UPDATED,
    finish,
    timestamp_text,
    utc_text,
    uuid_text,
)
from projections.task_sql import _by_shape, _sqlite_insert, _sqlite_update
from tests.read_side_support import reference_text

utc_times = st.datetimes(timezones=st.just(UTC))
zones = st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23)).map(timezone)


@given(utc_times)
def test_utc_text_is_isoformat_cut_before_the_offset(moment: datetime) -> None:
    assert utc_text(moment) == moment.isoformat(timespec="microseconds")[:26] + "Z"
    assert timestamp_text(moment) == reference_text(moment)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=zones))
def test_timestamp_text_of_any_zone_is_the_utc_text(moment: datetime) -> None:
    assert timestamp_text(moment) == reference_text(moment)
    assert timestamp_text(moment) == utc_text(moment.astimezone(UTC))


@given(st.datetimes())
def test_timestamp_text_of_a_naive_time_takes_it_as_utc(moment: datetime) -> None:
    assert timestamp_text(moment) == reference_text(moment)


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_uuid_text_is_str_of_the_uuid(number: int) -> None:
    assert uuid_text(number) == str(UUID(int=number))


@given(st.uuids())
def test_the_sqlite_id_conversion_is_uuid_of_the_hex(value: UUID) -> None:
    made = uuid_of_hex(value.hex)
    assert made == value and type(made) is UUID
    assert (made.int, made.is_safe, str(made), hash(made)) == (
        value.int,
        UUID(value.hex).is_safe,
        str(value),
        hash(value),
    )


@pytest.mark.parametrize(
    "text", ["", "xyz", "-" + "f" * 31, " " + "a" * 31, "{" + "0" * 31, "0" * 33, "g" * 32]
)
def test_the_sqlite_id_conversion_of_odd_text_is_uuids(text: str) -> None:
    """The same value, or the same error, as ``UUID(text)``."""
    try:
        expected = UUID(text)
    except ValueError as exc:
        with pytest.raises(ValueError, match="^" + re.escape(str(exc)) + "$"):
            uuid_of_hex(text)
        return
    assert uuid_of_hex(text) == expected


def test_finish_formats_each_time_once_and_leaves_text_and_none() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    row: list[object] = [None] * len(COLUMNS)
    row[START], row[END], row[UPDATED] = "2026-01-01T00:00:00.000000Z", at, at
    row[CREATED], row[LEASE] = at - timedelta(seconds=1), None
    finish(row)
    assert row[END] == row[UPDATED] == "2026-01-02T03:04:05.000006Z"
    assert row[CREATED] == "2026-01-02T03:04:04.000006Z"
    assert (row[START], row[LEASE]) == ("2026-01-01T00:00:00.000000Z", None)


def test_rows_are_grouped_by_their_nulls_and_bound_without_them() -> None:
    nullable = [COLUMNS.index(c) for c in NULLABLE]
    full = [f"v{i}" for i in range(len(COLUMNS))]
    some: list[str | None] = list(full)
    some[nullable[0]] = some[nullable[3]] = None
    groups = _by_shape([full, some, list(full)], tuple(range(len(COLUMNS))))
    assert len(groups) == 2
    (shape_full, rows_full), (shape_some, rows_some) = groups.items()
    assert rows_full == [tuple(full), tuple(full)]
    assert rows_some == [tuple(v for v in some if v is not None)]
    insert = _sqlite_insert("t", shape_some)
    assert insert.count("NULL") == 2 and insert.count("?") == len(COLUMNS) - 2
    update = _sqlite_update("t", shape_full)
    assert "NULL" not in update and update.endswith("WHERE id = ?")
