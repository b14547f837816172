"""How a pull run can end other than by finishing."""

from __future__ import annotations


class RunFailed(Exception):
    """The run failed for good: report it in ``SyncFinished`` and acknowledge the request."""

    status = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthFailed(RunFailed):
    """401/403 from the provider (after one OAuth refresh): retrying cannot help."""


class ReauthNeeded(RunFailed):
    """The OAuth refresh token was refused: a person must connect the integration again."""

    status = "reauth_required"


class RunDeferred(Exception):
    """The run cannot go on now but may later (quota spent, provider or broker down): keep the
    checkpoint, release the request, and let JetStream redeliver it after ``delay`` seconds."""

    def __init__(self, detail: str, delay: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.delay = delay


class RunPaused(RunDeferred):
    """The run gave its slot up by itself, checkpointed: its time slice is over while other
    requests wait, or the gateway is stopping. Not a failure: it never counts toward giving up."""


class ProviderUnavailable(RunDeferred):
    """The provider failed (unreachable, timeouts, 5xx) or its host's breaker is open. The worker
    releases the run for at least ``delay`` and longer with each delivery, so a provider that stays
    down costs a few probes an hour rather than a slot."""


class CursorExpired(Exception):
    """Gong (or Fathom) no longer accepts the page cursor: restart the window."""


class RunWithdrawn(Exception):
    """The scheduler took the run's request out of the SYNC work queue (the run was cancelled, or
    failed as stale): stop at this page boundary, the checkpoint kept, and report nothing more."""


class IntegrationErased(RunWithdrawn):
    """The run's integration was erased (or deleted) while it ran: stop before publishing another
    page, forget the run's checkpoint, and report nothing more (its history is being erased)."""
