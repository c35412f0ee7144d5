"""The one exception tree of refstudio.

Every error a user can cause or meet comes out of the public API as a subclass of
:class:`RefstudioError`; raw ``sqlite3``/``sqlalchemy``/``httpx``/``PIL`` errors are mapped at the
boundary where they happen and never escape. Each class carries the process exit code the CLI
uses, so scripts can tell kinds of failure apart (typer/click usage errors keep exit code 2)::

    RefstudioError (1)
    ├── ProjectError (3) ............ no project here, project exists, bad refstudio.toml
    │   ├── ProjectNotFoundError
    │   ├── ProjectExistsError
    │   └── ConfigError
    ├── InputError (4) .............. the user's input is wrong; nothing was changed
    │   ├── InvalidNameError
    │   ├── NameTakenError
    │   ├── ParameterError
    │   └── ImageError (5) .......... not an image, truncated, bomb, too big, unsupported
    ├── NotFoundError (6) ........... a named thing does not exist
    │   ├── ReferenceNotFoundError
    │   ├── ImageNotFoundError
    │   ├── GenerationNotFoundError
    │   ├── OutputNotFoundError
    │   └── UnknownModelError ....... no model with that id or alias (with did-you-mean)
    ├── PromptError (7) ............. a prompt or template cannot be turned into a request
    │   ├── MentionError ............ unknown @name (with did-you-mean), unknown label, malformed
    │   ├── TooManyReferencesError .. more references than the chosen model takes
    │   ├── TooFewReferencesError ... the chosen model needs more references than mentioned
    │   └── TemplateError ........... syntax, undefined variable, sandbox, missing file
    ├── BudgetExceededError (8) ..... the request would cost more than allowed; nothing was sent
    ├── ProviderError (10) .......... the provider said no, or could not be reached
    │   ├── AuthenticationError
    │   ├── NotAcceptedError ........ 429/503/refused before the body left: safe to retry
    │   │   └── LimitReachedError ... a daily limit is spent: stop the batch, send later
    │   ├── AmbiguousSubmitError .... the submit may have been accepted: never resent on our own
    │   ├── RequestRejectedError .... 4xx for the request itself: fix the request
    │   ├── TransientError .......... poll/download hiccup: retry freely
    │   └── ProtocolError ........... the answer did not follow the protocol
    ├── GenerationError (11) ........ a generation failed, or is in a state that forbids the action
    │   └── GenerationFailedError
    ├── WorkflowError (12) .......... a workflow file or plan is wrong
    └── StorageError (13) ........... the database or media folder failed under us
"""

from __future__ import annotations


class RefstudioError(Exception):
    """Base of every refstudio error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ProjectError(RefstudioError):
    exit_code = 3


class ProjectNotFoundError(ProjectError):
    pass


class ProjectExistsError(ProjectError):
    pass


class ConfigError(ProjectError):
    pass


class InputError(RefstudioError):
    exit_code = 4


class InvalidNameError(InputError):
    pass


class NameTakenError(InputError):
    pass


class ParameterError(InputError):
    pass


class ImageError(InputError):
    exit_code = 5


class NotFoundError(RefstudioError):
    exit_code = 6


class ReferenceNotFoundError(NotFoundError):
    pass


class ImageNotFoundError(NotFoundError):
    pass


class GenerationNotFoundError(NotFoundError):
    pass


class OutputNotFoundError(NotFoundError):
    pass


class PromptError(RefstudioError):
    """A prompt could not be resolved. ``position`` is a 0-based offset into the text, if known."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        position: int | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.position = position
        self.source = source
        self.line = line


class UnknownModelError(NotFoundError):
    pass


class MentionError(PromptError):
    pass


class TooManyReferencesError(PromptError):
    pass


class TooFewReferencesError(PromptError):
    pass


class TemplateError(PromptError):
    pass


class BudgetExceededError(RefstudioError):
    exit_code = 8


class ProviderError(RefstudioError):
    exit_code = 10

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.retry_after = retry_after


class AuthenticationError(ProviderError):
    pass


class NotAcceptedError(ProviderError):
    """The provider certainly did not take the request (429, 503, connection refused)."""


class LimitReachedError(NotAcceptedError):
    """Not accepted because an account's daily limit is spent (Runway's 429): retrying within
    seconds cannot help, so a batch stops and keeps the rest unsent. ``retry_after``: seconds
    until the window frees, when the provider said."""


class AmbiguousSubmitError(ProviderError):
    """The request may have been accepted and billed; resending could pay twice."""


class RequestRejectedError(ProviderError):
    pass


class TransientError(ProviderError):
    """A free call (poll, download, upload) failed in a way worth retrying."""


class ProtocolError(ProviderError):
    pass


class GenerationError(RefstudioError):
    exit_code = 11


class GenerationFailedError(GenerationError):
    pass


class WorkflowError(RefstudioError):
    exit_code = 12


class StorageError(RefstudioError):
    exit_code = 13


def clause(text: object) -> str:
    """``text`` (an error, or its words) ready to have more words put after it: without the
    full stop it may end with, so "…a response." + ". The request…" cannot make "..". """
    return str(text).rstrip().rstrip(".").rstrip()
