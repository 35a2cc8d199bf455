"""Pure unit tests of the status lifecycle (`model.transition`): no database, no API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from incident_hub.model import (
    LIFECYCLE,
    REOPEN_FROM_CLOSED,
    IllegalTransition,
    Status,
    allowed_moves,
    transition,
)

S = Status
STAMPS = ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at")
AT = datetime(2026, 11, 24, 14, 2, tzinfo=UTC)

# The lifecycle as specified, written out independently of `LIFECYCLE` so a change to the table is caught.
EXPECTED_MOVES: dict[Status, set[Status]] = {
    S.OPEN: {S.ACKNOWLEDGED, S.INVESTIGATING, S.IDENTIFIED, S.MONITORING, S.RESOLVED, S.CLOSED},
    S.ACKNOWLEDGED: {S.OPEN, S.INVESTIGATING, S.IDENTIFIED, S.MONITORING, S.RESOLVED},
    S.INVESTIGATING: {S.ACKNOWLEDGED, S.IDENTIFIED, S.MONITORING, S.RESOLVED},
    S.IDENTIFIED: {S.INVESTIGATING, S.MONITORING, S.RESOLVED},
    S.MONITORING: {S.INVESTIGATING, S.IDENTIFIED, S.RESOLVED},
    S.RESOLVED: {S.OPEN, S.INVESTIGATING, S.CLOSED},
    S.CLOSED: set(),
}
EXPECTED_REOPEN_FROM_CLOSED = {S.OPEN, S.INVESTIGATING}

# Which lifecycle timestamps a move *to* each status sets (when not already set).
EXPECTED_STAMPS: dict[Status, set[str]] = {
    S.OPEN: set(),
    S.ACKNOWLEDGED: {"acknowledged_at"},
    S.INVESTIGATING: {"acknowledged_at"},
    S.IDENTIFIED: {"acknowledged_at"},
    S.MONITORING: {"acknowledged_at", "mitigated_at"},
    S.RESOLVED: {"acknowledged_at", "resolved_at"},
    S.CLOSED: {"acknowledged_at", "resolved_at", "closed_at"},
}

ALL_PAIRS = [(current, target) for current in Status for target in Status]


def expected_allowed(current: Status, reopen: bool) -> list[Status]:
    moves = set(EXPECTED_MOVES[current])
    if reopen and current is S.CLOSED:
        moves |= EXPECTED_REOPEN_FROM_CLOSED
    return [s for s in Status if s in moves]


def test_lifecycle_table_matches_the_specified_moves() -> None:
    assert {k: set(v) for k, v in LIFECYCLE.items()} == EXPECTED_MOVES
    assert set(REOPEN_FROM_CLOSED) == EXPECTED_REOPEN_FROM_CLOSED
    assert set(LIFECYCLE) == set(Status)


def test_no_status_may_move_to_itself() -> None:
    for status in Status:
        assert status not in LIFECYCLE[status]
        with pytest.raises(IllegalTransition) as raised:
            transition(status, status, AT)
        assert raised.value.allowed == expected_allowed(status, reopen=False)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_every_pair_is_allowed_exactly_when_the_table_says_so(current: Status, target: Status) -> None:
    if target in EXPECTED_MOVES[current]:
        move = transition(current, target, AT)
        assert move.previous is current
        assert move.status is target
        assert set(move.timestamps) == EXPECTED_STAMPS[target]
        assert all(value == AT for value in move.timestamps.values())
    else:
        with pytest.raises(IllegalTransition) as raised:
            transition(current, target, AT)
        error = raised.value
        assert error.current is current
        assert error.target is target
        assert error.allowed == expected_allowed(current, reopen=False)
        assert str(error) == f"cannot move from {current} to {target}"


def test_closed_incident_cannot_move_without_reopen() -> None:
    for target in Status:
        with pytest.raises(IllegalTransition) as raised:
            transition(S.CLOSED, target, AT)
        assert raised.value.allowed == []


def test_closed_incident_reopens_only_to_open_or_investigating() -> None:
    assert allowed_moves(S.CLOSED, reopen=True) == [S.OPEN, S.INVESTIGATING]
    for target in Status:
        if target in EXPECTED_REOPEN_FROM_CLOSED:
            move = transition(S.CLOSED, target, AT, reopen=True, already_set=frozenset(STAMPS))
            assert move.reopened
            assert move.clears == ("resolved_at", "closed_at")
            assert move.timestamps == {}
        else:
            with pytest.raises(IllegalTransition) as raised:
                transition(S.CLOSED, target, AT, reopen=True)
            assert raised.value.allowed == [S.OPEN, S.INVESTIGATING]


def test_reopen_flag_does_not_widen_moves_of_other_statuses() -> None:
    for status in Status:
        if status is not S.CLOSED:
            assert allowed_moves(status, reopen=True) == allowed_moves(status)


def test_resolved_incident_reopens_and_clears_resolution_stamps() -> None:
    move = transition(
        S.RESOLVED, S.INVESTIGATING, AT, already_set=frozenset({"acknowledged_at", "resolved_at"})
    )
    assert move.reopened
    assert move.clears == ("resolved_at", "closed_at")
    assert move.timestamps == {}


def test_resolving_then_closing_is_not_a_reopen() -> None:
    move = transition(S.RESOLVED, S.CLOSED, AT, already_set=frozenset({"acknowledged_at", "resolved_at"}))
    assert not move.reopened
    assert move.clears == ()
    assert move.timestamps == {"closed_at": AT}


stamp_sets = st.frozensets(st.sampled_from(STAMPS))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@hypothesis_settings(deadline=None)  # pure and fast; no flaky deadline on a loaded machine
@given(
    current=st.sampled_from(Status),
    target=st.sampled_from(Status),
    reopen=st.booleans(),
    already=stamp_sets,
    at=times,
)
def test_transition_follows_the_table_and_never_overwrites_stamps(
    current: Status, target: Status, reopen: bool, already: frozenset[str], at: datetime
) -> None:
    allowed = expected_allowed(current, reopen)
    if target not in allowed:
        with pytest.raises(IllegalTransition) as raised:
            transition(current, target, at, reopen=reopen, already_set=already)
        assert raised.value.allowed == allowed
        assert raised.value.current is current
        assert raised.value.target is target
        return
    move = transition(current, target, at, reopen=reopen, already_set=already)
    assert move.previous is current
    assert move.status is target
    # Only the target's stamps, only those not already set, all at the move's time.
    assert set(move.timestamps) == EXPECTED_STAMPS[target] - already
    assert not set(move.timestamps) & already
    assert all(value == at for value in move.timestamps.values())
    reopened = not current.is_open and target.is_open
    assert move.reopened is reopened
    assert move.clears == (("resolved_at", "closed_at") if reopened else ())
    # A move never both sets and clears the same stamp.
    assert not set(move.timestamps) & set(move.clears)


@hypothesis_settings(deadline=None)  # pure and fast; no flaky deadline on a loaded machine
@given(
    path=st.lists(st.sampled_from(Status), min_size=1, max_size=12),
    start=times,
)
def test_walking_the_lifecycle_keeps_the_first_acknowledgement(path: list[Status], start: datetime) -> None:
    """Apply a random walk of legal moves the way the service does: stamps, once set, stay put until a
    reopen clears the resolution ones."""
    current = S.OPEN
    stamps: dict[str, datetime] = {}
    for step, target in enumerate(path):
        at = start + timedelta(minutes=step + 1)
        reopen = current is S.CLOSED
        if target not in allowed_moves(current, reopen=reopen):
            continue
        before = dict(stamps)
        move = transition(current, target, at, reopen=reopen, already_set=frozenset(stamps))
        for name in move.clears:
            stamps.pop(name, None)
        stamps.update(move.timestamps)
        current = move.status
        if "acknowledged_at" in before:
            assert stamps["acknowledged_at"] == before["acknowledged_at"]
        if "mitigated_at" in before:
            assert stamps["mitigated_at"] == before["mitigated_at"]
        if current in (S.RESOLVED, S.CLOSED):
            assert "resolved_at" in stamps
            assert "acknowledged_at" in stamps
        if current is S.CLOSED:
            assert "closed_at" in stamps
        if current.is_open:
            assert "resolved_at" not in stamps
            assert "closed_at" not in stamps
        if current is not S.OPEN and current.is_open:
            assert "acknowledged_at" in stamps
