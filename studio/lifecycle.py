"""The life of a job as values and rules: its states, which may follow which, how each one ends.

Everything here is pure (no I/O, no clock, no database), so the rules can be read, tested and
changed in one place: the ledger (`studio.ledger`) stores states and refuses what these rules
refuse; the runner (`studio.jobs`) asks them what an exception, a Stop or a restart means.

States and the rules between them
---------------------------------
    recorded ──► submitting ──► queued ◄─► running ◄─► saving ──► done
        │             │            └──────────┴───────────┴──► failed / download_failed
        ▼             ▼                                         stopped / timed_out
      failed     failed / outcome_unknown ──(a callback reveals the task id)──► queued

* `recorded` means provably nothing was sent: the runner writes `submitting` immediately before
  the POST, so a `recorded` job found at start-up fails ("nothing was sent") and the user may
  simply try again.
* `submitting` without a task id found at start-up becomes `outcome_unknown`: the POST may have
  started (and billed) a task whose id we never learned. Neither API has an idempotency key, so
  the app never resends it on its own. A callback carrying the job's secret token may still
  reveal the id later; the job then takes it and is watched again (`reveals_task_id`).
* `queued`, `running`, `saving` with a task id are resumed at start-up (the app was watching them
  when it stopped).
* `stopped` (the user stopped watching) and `timed_out` (our watch deadline passed) keep their
  task id; they are not resumed at start-up (someone decided to stop), but a user's "check
  again" may move them back to `queued`/`running`/`saving`. `download_failed` keeps each
  result's source URL and expiry, so a user's retry may move it back to `saving`.
* An answer that says nothing final about an accepted task (the key refused, the account out of
  credits, the task id unknown to the service right now) while it is watched ends the watching
  as `stopped`, not `failed`: the task may still finish and bill, so "check again" (with a
  working key) stays possible. Before a task was accepted the same answers mean nothing ran.
* `done` and `failed` are final: no other state may follow (the same state again is a harmless
  repeat, so a late callback racing the watcher is not an error).
* States that need a service task (`queued` and everything after it, except `failed`) are
  refused for a job without a task id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from providers.errors import (
    AuthenticationError,
    ImageServiceError,
    InsufficientCreditsError,
    SubmissionOutcomeUnknown,
    TaskNotFoundError,
    WatchTimeoutError,
)
from providers.types import TaskState
from studio.downloads import DownloadError


class JobState(StrEnum):
    RECORDED = "recorded"  # row written, submit not yet sent
    SUBMITTING = "submitting"  # the POST is (or was) in flight
    QUEUED = "queued"
    RUNNING = "running"
    SAVING = "saving"  # task succeeded, results being downloaded
    DONE = "done"
    FAILED = "failed"  # task failed, or the request was refused / never sent
    DOWNLOAD_FAILED = "download_failed"  # task succeeded, results not kept (URL + expiry kept)
    OUTCOME_UNKNOWN = "outcome_unknown"  # POST may have reached the service, no task id known
    STOPPED = "stopped"  # the user stopped watching; task id kept
    TIMED_OUT = "timed_out"  # our watch deadline passed; task id kept

    @property
    def is_terminal(self) -> bool:
        """Nothing more happens to the job without a user (or a callback) acting on it."""
        return self in TERMINAL_STATES

    @property
    def is_final(self) -> bool:
        """Nothing more can ever happen to the job."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
# Nothing more happens without a user: the ledger sets `finished_at` on entering one of these.
TERMINAL_STATES = FINAL_STATES | {
    JobState.DOWNLOAD_FAILED,
    JobState.OUTCOME_UNKNOWN,
    JobState.STOPPED,
    JobState.TIMED_OUT,
}
# Being worked on: shown as running on the page, settled or resumed at start-up.
ACTIVE_STATES = frozenset(JobState) - TERMINAL_STATES
# Watched again automatically at start-up (they need a task id).
RESUME_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.SAVING})
# A user may revive these (they keep a task id): check again / retry the download.
RECHECKABLE_STATES = frozenset({JobState.STOPPED, JobState.TIMED_OUT, JobState.DOWNLOAD_FAILED})
# Only these make sense without a task id: the service has not (knowingly) given one yet.
NEEDS_TASK_ID = frozenset(JobState) - {
    JobState.RECORDED,
    JobState.SUBMITTING,
    JobState.FAILED,
    JobState.OUTCOME_UNKNOWN,
}
# A task id may arrive in these: the submit answer (or a callback beating it) while
# `submitting`, a callback revealing the task of an `outcome_unknown` job.
TAKES_TASK_ID = frozenset({JobState.SUBMITTING, JobState.OUTCOME_UNKNOWN})

_AFTER_TASK = frozenset(
    {
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SAVING,
        JobState.DONE,
        JobState.FAILED,
        JobState.DOWNLOAD_FAILED,
        JobState.STOPPED,
        JobState.TIMED_OUT,
    }
)
# Which states may follow each state (besides the same state again). `queued` after
# `submitting`/`outcome_unknown` needs a task id, so in practice only a task id's arrival makes it.
_NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.RECORDED: frozenset({JobState.SUBMITTING, JobState.FAILED}),
    JobState.SUBMITTING: frozenset({JobState.QUEUED, JobState.FAILED, JobState.OUTCOME_UNKNOWN}),
    JobState.OUTCOME_UNKNOWN: frozenset({JobState.QUEUED, JobState.FAILED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    **{state: _AFTER_TASK for state in _AFTER_TASK - FINAL_STATES},
}


def next_states(state: JobState) -> frozenset[JobState]:
    """The states that may follow `state` (the same state again is always allowed)."""
    return _NEXT[JobState(state)]


def transition_refusal(current: JobState, new: JobState, *, has_task_id: bool) -> str | None:
    """Why `current` may not become `new`, in a few words; None when it may.

    The ledger raises its InvalidTransitionError with this reason, so every writer (the runner,
    a callback, a user's "check again") is held to the same rules.
    """
    current, new = JobState(current), JobState(new)
    if new != current and new not in _NEXT[current]:
        return f"{current} cannot become {new}" + (" (final state)" if current.is_final else "")
    if new in NEEDS_TASK_ID and not has_task_id:
        return f"{new} needs a task id"
    return None


def may_become(current: JobState, new: JobState, *, has_task_id: bool) -> bool:
    """Whether `current` may become `new` (see `transition_refusal` for the reason if not)."""
    return transition_refusal(current, new, has_task_id=has_task_id) is None


def may_take_task_id(state: JobState) -> bool:
    """Whether a job in `state` may be given its service task id (it then becomes `queued`)."""
    return JobState(state) in TAKES_TASK_ID


def reveals_task_id(state: JobState, task_id: str | None) -> bool:
    """Whether a trusted callback (its token checked) may give this job its task id.

    Only an `outcome_unknown` job without an id: its POST may have started a task whose id never
    arrived, and the service's callback for that task is the one way to learn it. The job takes
    the id and is watched again, so the result that was paid for is still kept. Any other job
    either has its id already or provably sent nothing that could have started a task.
    """
    return JobState(state) is JobState.OUTCOME_UNKNOWN and task_id is None


# --- what the service says -------------------------------------------------------------------

_FROM_TASK = {
    TaskState.QUEUED: JobState.QUEUED,
    TaskState.RUNNING: JobState.RUNNING,
    TaskState.SUCCEEDED: JobState.SAVING,  # the task is done; its results are ours to keep
    TaskState.FAILED: JobState.FAILED,
}


def state_for(task_state: TaskState) -> JobState:
    """The job state a reading of the service's task state means.

    A succeeded task is not yet a `done` job: the job is done once its results are kept.
    """
    return _FROM_TASK[TaskState(task_state)]


# --- how a job ends --------------------------------------------------------------------------

INTERNAL_ERROR = "InternalError"  # the `kind` of an ending caused by a bug


@dataclass(frozen=True)
class Ending:
    """How a job ended: its state, a plain sentence for the user, and a short `kind` for the
    ledger (an exception's class name, or a word for endings that are not errors)."""

    state: JobState
    message: str
    kind: str

    @property
    def is_bug(self) -> bool:
        """Caused by an exception nothing expected: the runner logs its traceback."""
        return self.kind == INTERNAL_ERROR


OFFLINE_TASK_GONE = "The offline preview keeps no tasks across restarts: generate again."
UNEXPECTED_ERROR = "An unexpected error stopped this job; it has been logged."


def ending_for(exc: Exception, *, resumed_offline: bool = False) -> Ending:
    """What an exception raised while submitting, watching or keeping results means for the job.

    `resumed_offline`: the job was taken up from the ledger and runs on the in-process simulator,
    which starts empty on each run, so its task cannot be found again.
    """
    if isinstance(exc, DownloadError):
        return Ending(
            JobState.DOWNLOAD_FAILED,
            f"The image was made but could not be downloaded: {exc.message}. "
            "The provider's link is kept; retry from history.",
            "DownloadError",
        )
    if not isinstance(exc, ImageServiceError):  # a bug must still end the job visibly
        return Ending(JobState.FAILED, UNEXPECTED_ERROR, INTERNAL_ERROR)
    if isinstance(exc, TaskNotFoundError) and resumed_offline:
        return Ending(JobState.FAILED, OFFLINE_TASK_GONE, "OfflinePreview")
    if isinstance(exc, _NOT_FINAL_WHILE_WATCHING) and exc.task_id:
        # A status read of an accepted task was refused: the task itself may still finish.
        return Ending(JobState.STOPPED, _still_checkable(exc), type(exc).__name__)
    if isinstance(exc, SubmissionOutcomeUnknown):
        # The POST may have started (and billed) a task: never failed, so never resent.
        state = JobState.OUTCOME_UNKNOWN
    elif isinstance(exc, WatchTimeoutError):
        state = JobState.TIMED_OUT  # our deadline, not the task's end: it may still finish
    else:
        state = JobState.FAILED
    # The status line and history show the task id on their own.
    return Ending(state, exc.user_message(with_task=False), type(exc).__name__)


# Refusals of a status read that say nothing about how the task ends (only errors raised while
# reading a task's status carry its task id; a refused submit carries none).
_NOT_FINAL_WHILE_WATCHING = (AuthenticationError, InsufficientCreditsError, TaskNotFoundError)
_CHECK_AGAIN = (
    "the task may still finish and be billed, so it is kept: press 'Check again' in history"
)


def _still_checkable(exc: ImageServiceError) -> str:
    service = exc.provider or "image"
    if isinstance(exc, AuthenticationError):
        return (
            f"The {service} service refused the API key while this task was watched; "
            f"{_CHECK_AGAIN} with a working key."
        )
    if isinstance(exc, InsufficientCreditsError):
        return (
            f"The {service} service said the account is out of credits while this task was "
            f"watched; {_CHECK_AGAIN} after topping up."
        )
    return f"The {service} service did not know this task when asked; {_CHECK_AGAIN} later."


def stopped_ending(state: JobState) -> Ending:
    """What pressing Stop means at each point: only a sent POST can have started a task."""
    state = JobState(state)
    if state is JobState.RECORDED:
        return Ending(
            JobState.FAILED, "stopped before sending; nothing was sent", JobState.FAILED.value
        )
    if state is JobState.SUBMITTING:
        return Ending(
            JobState.OUTCOME_UNKNOWN,
            "stopped while sending: the service may have started (and billed) a task whose id "
            "never arrived; it was not sent again",
            JobState.OUTCOME_UNKNOWN.value,
        )
    return Ending(
        JobState.STOPPED,
        "stopped watching; the service has no cancel, so the task may still finish and be "
        "billed (its id is kept in history)",
        JobState.STOPPED.value,
    )


# --- after a restart -------------------------------------------------------------------------

NOTHING_SENT = "interrupted before sending; nothing was sent"
OUTCOME_UNKNOWN_MESSAGE = (
    "interrupted while sending: the service may have started (and billed) a task, "
    "but its id never arrived; it was not sent again"
)
INTERRUPTED = "interrupted"  # the `kind` recorded for a job settled at start-up
# A task started with a visitor's own key cannot be watched again without it (keys are never
# stored), so after a restart it waits, stopped, for the visitor to bring the key back.
KEY_NEEDED = Ending(
    JobState.STOPPED,
    "The app restarted, and this task was started with your own key, which is never stored: "
    "enter the key and press 'Check again' in history.",
    "KeyNeeded",
)


class RecoveryAction(StrEnum):
    NOTHING = "nothing"  # not interrupted: leave it as it is
    RESUME = "resume watching"  # it has a task: watch it again
    FAIL_NOTHING_SENT = "fail: nothing was sent"
    MARK_OUTCOME_UNKNOWN = "mark outcome unknown"


@dataclass(frozen=True)
class Recovery:
    """What to do at start-up with a job found in some state: the action, the state the job is
    in afterwards, and (when settled) the plain sentence that says why."""

    action: RecoveryAction
    state: JobState
    message: str | None = None


def recovery_for(state: JobState, *, has_task_id: bool) -> Recovery:
    """What start-up does with a job an interrupted run left in `state`.

    Assumes one app process per ledger file, asked once at start-up before new jobs are taken:
    then every active job was being worked on by the run that stopped.
    """
    state = JobState(state)
    if state not in ACTIVE_STATES:
        return Recovery(RecoveryAction.NOTHING, state)
    if state is JobState.RECORDED:  # `submitting` is written before the POST: nothing went out
        return Recovery(RecoveryAction.FAIL_NOTHING_SENT, JobState.FAILED, NOTHING_SENT)
    if not has_task_id:
        # The POST may have gone out. An active state past `submitting` without a task id cannot
        # be written through the ledger; if one were found, the same caution applies.
        return Recovery(
            RecoveryAction.MARK_OUTCOME_UNKNOWN, JobState.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE
        )
    # A task id is only ever written together with `queued`, so `submitting` with an id cannot
    # happen; if it did, the task is real: watch it from `queued`.
    return Recovery(
        RecoveryAction.RESUME, JobState.QUEUED if state is JobState.SUBMITTING else state
    )
