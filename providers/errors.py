"""One exception tree for both services, each with a plain sentence for the user.

    ImageServiceError                  anything that went wrong talking to a service
    ├── InvalidRequestError            the request does not fit the model (nothing was sent)
    ├── RequestRejected                the service refused the request (nothing ran)
    │   ├── AuthenticationError        401: missing, wrong or expired key
    │   ├── BadRequestError            400: the service's own detail/message
    │   ├── InsufficientCreditsError   the account cannot pay for the task
    │   ├── RateLimitedError           429: with the wait, when the service gives one
    │   └── TaskNotFoundError          404: the service does not know the task id
    ├── ServiceError                   5xx or an answer we cannot read
    ├── ServiceUnreachableError        the connection failed before any answer
    ├── WatchTimeoutError              the task did not finish before our deadline
    ├── SubmissionOutcomeUnknown       the POST may or may not have started a task
    └── TaskFailed                     the task ran and the service reports it failed
        ├── ContentViolationError      the prompt or a reference broke the safety rules
        └── InvalidImageUrlError       the service could not fetch a reference image

Messages never contain an API key: clients put keys only in the Authorization header, and
errors are built from status codes and response bodies, never from request headers.
"""

from __future__ import annotations


class ImageServiceError(Exception):
    """Base class. `provider`, `task_id` and `status_code` say where it happened."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        task_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.task_id = task_id
        self.status_code = status_code

    def user_message(self, *, with_task: bool = True) -> str:
        """A plain sentence for the user; `with_task=False` leaves the task id to the caller."""
        return f"The image service had a problem: {self.message}"

    def _task_suffix(self, show: bool = True) -> str:
        return f" (task {self.task_id})" if show and self.task_id else ""


class RequestRejected(ImageServiceError):
    """The service refused the request; no task ran."""

    def user_message(self, *, with_task: bool = True) -> str:
        return f"The service refused the request: {self.message}{self._task_suffix(with_task)}"


class AuthenticationError(RequestRejected):
    def user_message(self, *, with_task: bool = True) -> str:
        return (
            f"The {self.provider or 'image'} service did not accept the API key: "
            "check your API key (it may be missing, mistyped or expired)."
        )


class BadRequestError(RequestRejected):
    def user_message(self, *, with_task: bool = True) -> str:
        return f"The service rejected the request: {self.message}"


class InsufficientCreditsError(RequestRejected):
    def user_message(self, *, with_task: bool = True) -> str:
        return (
            f"Your {self.provider or 'service'} account does not have enough credits "
            "for this image: top up and try again."
        )


class RateLimitedError(RequestRejected):
    def __init__(self, message: str, *, retry_after: float | None = None, **context) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after

    def user_message(self, *, with_task: bool = True) -> str:
        wait = (
            f"wait {self.retry_after:.0f} s and try again"
            if self.retry_after is not None
            else "wait a moment and try again"
        )
        return f"The service is rate-limiting requests: {wait}{self._task_suffix(with_task)}."


class TaskNotFoundError(RequestRejected):
    def user_message(self, *, with_task: bool = True) -> str:
        return f"The service does not know this task{self._task_suffix(with_task)}."


class ServiceError(ImageServiceError):
    def __init__(self, message: str, *, retry_after: float | None = None, **context) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after

    def user_message(self, *, with_task: bool = True) -> str:
        code = f" (HTTP {self.status_code})" if self.status_code else ""
        return (
            f"The {self.provider or 'image'} service had an internal error{code}"
            f"{self._task_suffix(with_task)}: try again in a moment."
        )


class ServiceUnreachableError(ImageServiceError):
    def user_message(self, *, with_task: bool = True) -> str:
        return f"Could not reach the {self.provider or 'image'} service: {self.message}"


class WatchTimeoutError(ImageServiceError):
    def user_message(self, *, with_task: bool = True) -> str:
        return (
            f"The task did not finish in time{self._task_suffix(with_task)}; it may still finish "
            "on the service."
        )


class SubmissionOutcomeUnknown(ImageServiceError):
    """The POST may have reached the service. It is never resent automatically:
    neither API has an idempotency key, so a resend could start and bill a second task."""

    def user_message(self, *, with_task: bool = True) -> str:
        known = (
            f" The service gave task id {self.task_id}."
            if self.task_id
            else " No task id came back."
        )
        return (
            "The request was sent but no clear answer came back, so it may or may not have "
            f"started a task.{known} It was not resent, to avoid paying twice."
        )


class TaskFailed(ImageServiceError):
    """The task ran and failed; `fail_code` is the provider's code when it gives one."""

    def __init__(self, message: str, *, fail_code: str | None = None, **context) -> None:
        super().__init__(message, **context)
        self.fail_code = fail_code

    def user_message(self, *, with_task: bool = True) -> str:
        return f"The task failed{self._task_suffix(with_task)}: {self.message}"


class ContentViolationError(TaskFailed):
    def user_message(self, *, with_task: bool = True) -> str:
        return (
            "The service declined the prompt or a reference image under its content policy"
            f"{self._task_suffix(with_task)}: rephrase and try again."
        )


class InvalidImageUrlError(TaskFailed):
    def user_message(self, *, with_task: bool = True) -> str:
        return (
            f"The service could not fetch a reference image{self._task_suffix(with_task)}: "
            "make sure each reference is a public JPG, PNG or WebP under 10 MB."
        )


def task_failure(
    message: str | None, fail_code: str | None, *, provider: str, task_id: str
) -> TaskFailed:
    """The TaskFailed subclass that fits a provider's fail code or message."""
    text = message or fail_code or "no reason given"
    # An explicit fail code decides; the message's words are only a fallback without one.
    haystack = (fail_code or message or "").lower()
    # The reference check comes first: its message quotes the URL, which may hold any word.
    if "invalid_image_url" in haystack or "image url" in haystack:
        cls: type[TaskFailed] = InvalidImageUrlError
    elif "content_violation" in haystack or "safety" in haystack or "policy" in haystack:
        cls = ContentViolationError
    else:
        cls = TaskFailed
    return cls(text, fail_code=fail_code, provider=provider, task_id=task_id)


class InvalidRequestError(ImageServiceError):
    """The request does not fit the model; found before anything was sent."""

    def user_message(self, *, with_task: bool = True) -> str:
        return self.message
