"""The job lifecycle's pure rules: transitions, task ids, endings, restart recovery.

The expected tables are written out here on purpose, not derived from the module's own sets:
a change to a rule must show up as a failing line below.
"""

from __future__ import annotations

import itertools

import pytest

from providers.errors import (
    BadRequestError,
    ImageServiceError,
    RateLimitedError,
    ServiceUnreachableError,
    SubmissionOutcomeUnknown,
    TaskFailed,
    TaskNotFoundError,
    WatchTimeoutError,
)
from providers.types import TaskState
from studio.downloads import DownloadError
from studio.lifecycle import (
    ACTIVE_STATES,
    FINAL_STATES,
    INTERNAL_ERROR,
    NOTHING_SENT,
    OUTCOME_UNKNOWN_MESSAGE,
    RECHECKABLE_STATES,
    RESUME_STATES,
    TERMINAL_STATES,
    Ending,
    JobState,
    Recovery,
    RecoveryAction,
    ending_for,
    may_become,
    may_take_task_id,
    next_states,
    recovery_for,
    reveals_task_id,
    state_for,
    stopped_ending,
    transition_refusal,
)

S = JobState
AFTER_TASK = {
    S.QUEUED,
    S.RUNNING,
    S.SAVING,
    S.DONE,
    S.FAILED,
    S.DOWNLOAD_FAILED,
    S.STOPPED,
    S.TIMED_OUT,
}
# Which state may follow which (the same state again is always allowed).
ALLOWED = {
    S.RECORDED: {S.SUBMITTING, S.FAILED},
    S.SUBMITTING: {S.QUEUED, S.FAILED, S.OUTCOME_UNKNOWN},
    S.OUTCOME_UNKNOWN: {S.QUEUED, S.FAILED},
    S.QUEUED: AFTER_TASK,
    S.RUNNING: AFTER_TASK,
    S.SAVING: AFTER_TASK,
    S.DOWNLOAD_FAILED: AFTER_TASK,
    S.STOPPED: AFTER_TASK,
    S.TIMED_OUT: AFTER_TASK,
    S.DONE: set(),
    S.FAILED: set(),
}
WITHOUT_TASK = {S.RECORDED, S.SUBMITTING, S.FAILED, S.OUTCOME_UNKNOWN}
PAIRS = list(itertools.product(JobState, JobState))


def test_the_table_covers_every_state() -> None:
    assert set(ALLOWED) == set(JobState)


# --- transitions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_transition_with_a_task_id(current: JobState, new: JobState) -> None:
    allowed = new == current or new in ALLOWED[current]
    assert may_become(current, new, has_task_id=True) is allowed
    refusal = transition_refusal(current, new, has_task_id=True)
    if allowed:
        assert refusal is None
    else:
        assert refusal == f"{current} cannot become {new}" + (
            " (final state)" if current in (S.DONE, S.FAILED) else ""
        )


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_transition_without_a_task_id(current: JobState, new: JobState) -> None:
    allowed = (new == current or new in ALLOWED[current]) and new in WITHOUT_TASK
    assert may_become(current, new, has_task_id=False) is allowed
    if (new == current or new in ALLOWED[current]) and new not in WITHOUT_TASK:
        assert transition_refusal(current, new, has_task_id=False) == f"{new} needs a task id"


def test_next_states_are_the_table() -> None:
    assert {state: set(next_states(state)) for state in JobState} == ALLOWED
    assert next_states("recorded") == {S.SUBMITTING, S.FAILED}  # plain strings are accepted


def test_final_states_refuse_everything_but_themselves() -> None:
    for final, other in itertools.product((S.DONE, S.FAILED), JobState):
        expected = other == final
        assert may_become(final, other, has_task_id=True) is expected


def test_a_job_never_goes_back_to_sending() -> None:
    # Only a recorded job may be sent (the same state again is a repeat, not a resend).
    for state, has_task_id in itertools.product(JobState, (False, True)):
        if state not in (S.RECORDED, S.SUBMITTING):
            assert not may_become(state, S.SUBMITTING, has_task_id=has_task_id)
        if state is not S.RECORDED:
            assert not may_become(state, S.RECORDED, has_task_id=has_task_id)


# --- task ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(JobState))
def test_a_task_id_arrives_only_while_sending_or_when_the_outcome_is_unknown(
    state: JobState,
) -> None:
    assert may_take_task_id(state) is (state in (S.SUBMITTING, S.OUTCOME_UNKNOWN))


@pytest.mark.parametrize("state", list(JobState))
def test_a_callback_reveals_a_task_only_to_an_outcome_unknown_job(state: JobState) -> None:
    assert reveals_task_id(state, None) is (state is S.OUTCOME_UNKNOWN)
    assert reveals_task_id(state, "ta-1") is False  # a job's task id is never replaced


def test_a_revealed_task_may_be_watched() -> None:
    assert may_become(S.OUTCOME_UNKNOWN, S.QUEUED, has_task_id=True)
    assert not may_become(S.OUTCOME_UNKNOWN, S.QUEUED, has_task_id=False)


# --- the service's states -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_state", "job_state"),
    [
        (TaskState.QUEUED, S.QUEUED),
        (TaskState.RUNNING, S.RUNNING),
        (TaskState.SUCCEEDED, S.SAVING),
        (TaskState.FAILED, S.FAILED),
    ],
)
def test_state_for_each_task_state(task_state: TaskState, job_state: JobState) -> None:
    assert state_for(task_state) is job_state
    assert state_for(TaskState(task_state.value)) is job_state


def test_every_task_state_has_a_job_state() -> None:
    assert {state_for(t) for t in TaskState} <= set(JobState)
    assert len({state_for(t) for t in TaskState}) == len(TaskState)


# --- endings ------------------------------------------------------------------------------------


def test_an_unknown_submit_outcome_is_never_failed() -> None:
    ending = ending_for(SubmissionOutcomeUnknown("read timeout", provider="apixo"))
    assert ending == Ending(
        S.OUTCOME_UNKNOWN,
        "The request was sent but no clear answer came back, so it may or may not have "
        "started a task. No task id came back. It was not resent, to avoid paying twice.",
        "SubmissionOutcomeUnknown",
    )
    assert not ending.is_bug


def test_our_deadline_is_a_time_out_and_the_sentence_leaves_the_task_id_out() -> None:
    ending = ending_for(WatchTimeoutError("no final state after 600 s", task_id="ta-7"))
    assert ending == Ending(
        S.TIMED_OUT,
        "The task did not finish in time; it may still finish on the service.",
        "WatchTimeoutError",
    )


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            TaskFailed("boom", task_id="ta-1"),
            "The task failed: boom",
        ),
        (
            BadRequestError("prompt is required"),
            "The service rejected the request: prompt is required",
        ),
        (
            ServiceUnreachableError("connection refused", provider="defapi"),
            "Could not reach the defapi service: connection refused",
        ),
        (
            RateLimitedError("slow down", retry_after=7.0),
            RateLimitedError("slow down", retry_after=7.0).user_message(with_task=False),
        ),
        (
            ImageServiceError("odd answer"),
            "The image service had a problem: odd answer",
        ),
    ],
    ids=["task-failed", "bad-request", "unreachable", "rate-limited", "service-error"],
)
def test_other_service_errors_fail_the_job_with_their_own_sentence(
    exc: ImageServiceError, message: str
) -> None:
    assert ending_for(exc) == Ending(S.FAILED, message, type(exc).__name__)
    assert ending_for(exc, resumed_offline=True) == Ending(S.FAILED, message, type(exc).__name__)


def test_a_task_the_service_forgot() -> None:
    exc = TaskNotFoundError("task not found", task_id="ta-9")
    # While watching, "not found" says nothing final: the job stays checkable again (see
    # tests/test_recoverable_ends.py); without a task id nothing was accepted at all.
    assert ending_for(exc).state is S.STOPPED
    assert ending_for(TaskNotFoundError("task not found")) == Ending(
        S.FAILED, "The service does not know this task.", "TaskNotFoundError"
    )
    # The simulator starts empty on each run: a resumed offline job cannot be found again.
    assert ending_for(exc, resumed_offline=True) == Ending(
        S.FAILED,
        "The offline preview keeps no tasks across restarts: generate again.",
        "OfflinePreview",
    )


def test_a_result_that_could_not_be_downloaded_keeps_its_link() -> None:
    exc = DownloadError("the server answered HTTP 404", url="https://cdn.example/a.png")
    assert ending_for(exc) == Ending(
        S.DOWNLOAD_FAILED,
        "The image was made but could not be downloaded: the server answered HTTP 404. "
        "The provider's link is kept; retry from history.",
        "DownloadError",
    )


@pytest.mark.parametrize("exc", [RuntimeError("bug"), KeyError("x"), AssertionError()])
def test_a_bug_still_ends_the_job_visibly(exc: Exception) -> None:
    ending = ending_for(exc)
    assert ending == Ending(
        S.FAILED, "An unexpected error stopped this job; it has been logged.", INTERNAL_ERROR
    )
    assert ending.is_bug
    assert ending_for(exc, resumed_offline=True).is_bug


def test_only_a_bug_is_a_bug() -> None:
    for exc in (
        SubmissionOutcomeUnknown("x"),
        WatchTimeoutError("x"),
        TaskNotFoundError("x"),
        DownloadError("x", url="u"),
    ):
        assert not ending_for(exc).is_bug


def test_every_ending_is_terminal_and_not_done() -> None:
    for exc in (
        SubmissionOutcomeUnknown("x"),
        WatchTimeoutError("x"),
        TaskFailed("x"),
        DownloadError("x", url="u"),
        ValueError("x"),
    ):
        state = ending_for(exc).state
        assert state.is_terminal and state is not S.DONE


@pytest.mark.parametrize(
    ("state", "ending"),
    [
        (S.RECORDED, Ending(S.FAILED, "stopped before sending; nothing was sent", "failed")),
        (
            S.SUBMITTING,
            Ending(
                S.OUTCOME_UNKNOWN,
                "stopped while sending: the service may have started (and billed) a task "
                "whose id never arrived; it was not sent again",
                "outcome_unknown",
            ),
        ),
        *(
            (
                state,
                Ending(
                    S.STOPPED,
                    "stopped watching; the service has no cancel, so the task may still finish "
                    "and be billed (its id is kept in history)",
                    "stopped",
                ),
            )
            for state in (S.QUEUED, S.RUNNING, S.SAVING)
        ),
    ],
    ids=lambda value: str(value) if isinstance(value, JobState) else "",
)
def test_what_stop_means_at_each_point(state: JobState, ending: Ending) -> None:
    assert stopped_ending(state) == ending


# --- after a restart ----------------------------------------------------------------------------

RESUME = RecoveryAction.RESUME
NOTHING = RecoveryAction.NOTHING


@pytest.mark.parametrize(
    ("state", "has_task_id", "expected"),
    [
        (S.RECORDED, False, Recovery(RecoveryAction.FAIL_NOTHING_SENT, S.FAILED, NOTHING_SENT)),
        (S.RECORDED, True, Recovery(RecoveryAction.FAIL_NOTHING_SENT, S.FAILED, NOTHING_SENT)),
        (
            S.SUBMITTING,
            False,
            Recovery(
                RecoveryAction.MARK_OUTCOME_UNKNOWN, S.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE
            ),
        ),
        (S.SUBMITTING, True, Recovery(RESUME, S.QUEUED)),
        (S.QUEUED, True, Recovery(RESUME, S.QUEUED)),
        (S.RUNNING, True, Recovery(RESUME, S.RUNNING)),
        (S.SAVING, True, Recovery(RESUME, S.SAVING)),
        *(
            (
                state,
                False,
                Recovery(
                    RecoveryAction.MARK_OUTCOME_UNKNOWN,
                    S.OUTCOME_UNKNOWN,
                    OUTCOME_UNKNOWN_MESSAGE,
                ),
            )
            for state in (S.QUEUED, S.RUNNING, S.SAVING)
        ),
        *(
            (state, has_task_id, Recovery(NOTHING, state))
            for state in (
                S.DONE,
                S.FAILED,
                S.DOWNLOAD_FAILED,
                S.OUTCOME_UNKNOWN,
                S.STOPPED,
                S.TIMED_OUT,
            )
            for has_task_id in (False, True)
        ),
    ],
)
def test_recovery_decision(state: JobState, has_task_id: bool, expected: Recovery) -> None:
    assert recovery_for(state, has_task_id=has_task_id) == expected


def test_recovery_messages_say_what_was_and_was_not_sent() -> None:
    assert NOTHING_SENT == "interrupted before sending; nothing was sent"
    assert "not sent again" in OUTCOME_UNKNOWN_MESSAGE
    assert "may have started (and billed) a task" in OUTCOME_UNKNOWN_MESSAGE


def test_recovery_only_resumes_what_may_be_watched() -> None:
    for state, has_task_id in itertools.product(JobState, (False, True)):
        step = recovery_for(state, has_task_id=has_task_id)
        if step.action is RESUME:
            assert has_task_id and step.state in RESUME_STATES
        elif step.action is not NOTHING:
            assert step.state.is_terminal and step.message
            # a legal move, except from a state that could not exist without a task id
            assert state not in (S.RECORDED, S.SUBMITTING) or may_become(
                state, step.state, has_task_id=False
            )


# --- the state sets -----------------------------------------------------------------------------


def test_state_sets() -> None:
    assert FINAL_STATES == {S.DONE, S.FAILED}
    assert TERMINAL_STATES == {
        S.DONE,
        S.FAILED,
        S.DOWNLOAD_FAILED,
        S.OUTCOME_UNKNOWN,
        S.STOPPED,
        S.TIMED_OUT,
    }
    assert ACTIVE_STATES == {S.RECORDED, S.SUBMITTING, S.QUEUED, S.RUNNING, S.SAVING}
    assert RESUME_STATES == {S.QUEUED, S.RUNNING, S.SAVING}
    assert RECHECKABLE_STATES == {S.STOPPED, S.TIMED_OUT, S.DOWNLOAD_FAILED}


def test_state_sets_are_consistent() -> None:
    assert RESUME_STATES.isdisjoint(TERMINAL_STATES)
    assert RECHECKABLE_STATES <= TERMINAL_STATES - FINAL_STATES
    assert JobState.DONE.is_final and JobState.FAILED.is_final
    assert JobState.STOPPED.is_terminal and not JobState.STOPPED.is_final
    assert not JobState.SUBMITTING.is_terminal
    for state in RECHECKABLE_STATES:  # a user's "check again" watches from queued
        assert may_become(state, S.QUEUED, has_task_id=True)
