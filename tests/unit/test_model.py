from dltui.model import ACTIVE_STATES, FINAL_STATES, TRANSITIONS, JobState, sources_of


def test_every_state_has_an_entry() -> None:
    assert set(TRANSITIONS) == set(JobState)


def test_final_states_only_leave_for_healing() -> None:
    assert TRANSITIONS[JobState.CANCELLED] == frozenset()
    assert TRANSITIONS[JobState.FINALIZED] == frozenset({JobState.PLANNED})


def test_every_active_state_can_be_paused_cancelled_failed_and_requeued() -> None:
    for state in ACTIVE_STATES:
        assert {JobState.PAUSED, JobState.CANCELLED, JobState.FAILED, JobState.PLANNED} <= (
            TRANSITIONS[state]
        )


def test_any_non_final_state_can_be_cancelled() -> None:
    for state in set(JobState) - FINAL_STATES:
        assert JobState.CANCELLED in TRANSITIONS[state]


def test_sources_of_inverts_the_table() -> None:
    for target in JobState:
        for source in JobState:
            assert (source in sources_of(target)) == (target in TRANSITIONS[source])
