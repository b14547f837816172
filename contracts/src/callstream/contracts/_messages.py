"""Wire messages exchanged over NATS JetStream.

Every message carries ``v`` so that a consumer can tell versions apart; a consumer that sees a
version it does not know treats the message as unmappable (DLQ), never as data to guess at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ._links import LinkReason

Source = Literal["fathom", "gong"]
Origin = Literal["webhook", "pull"]
SyncMode = Literal["incremental", "backfill", "range", "latest"]
Change = Literal["created", "updated"]
# Why a message became a tombstone: the provider no longer has the call, an erasure asked for it,
# or the workspace's retention ran out.
DeletionReason = Literal["provider_deleted", "erased", "retention"]

WorkspaceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class RawCall(msgspec.Struct, kw_only=True, frozen=True):
    """One provider object as received, published to ``calls.raw.<source>.<integration_id>``.

    ``payload`` is the provider's JSON **byte for byte**: a Fathom meeting, or for Gong a
    ``GongCallBundle`` (the extensive call object and its transcript, each as sent).
    """

    v: Literal[1] = 1
    event_id: str
    source: Source
    workspace_id: WorkspaceId
    integration_id: str
    external_id: str
    origin: Origin
    received_at: datetime
    traceparent: str | None = None
    # The pull run that fetched it (absent for a webhook): the normalizer reports what it stored of
    # each run (``SyncStored``), so a run's progress goes on past "published".
    run_id: str | None = None
    payload: msgspec.Raw


class GongCallBundle(msgspec.Struct, kw_only=True, frozen=True):
    """The payload of a Gong ``RawCall``: the call from ``/v2/calls/extensive`` and its entry of
    ``/v2/calls/transcript`` (``null`` when Gong has none yet), both as Gong sent them."""

    call: msgspec.Raw
    # Raw takes any JSON value, null included (msgspec cannot put Raw in a union with None).
    transcript: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))

    @property
    def has_transcript(self) -> bool:
        return bytes(self.transcript).strip() != b"null"


class TimeWindow(msgspec.Struct, kw_only=True, frozen=True):
    """A half-open interval ``[start, end)`` of provider time; ``None`` means unbounded."""

    start: datetime | None = None
    end: datetime | None = None


class SyncRequested(msgspec.Struct, kw_only=True, frozen=True):
    v: Literal[1] = 1
    run_id: str
    integration_id: str
    workspace_id: WorkspaceId
    provider: Source
    mode: SyncMode
    window: TimeWindow = TimeWindow()
    limit: int | None = None
    requested_at: datetime | None = None
    traceparent: str | None = None
    # A reconciling run: when it has read its whole window (every page, no limit), it also
    # publishes ``CallsListed`` so calls the provider no longer lists become tombstones.
    reconcile: bool = False


class SyncProgress(msgspec.Struct, kw_only=True, frozen=True, tag="progress", tag_field="kind"):
    """A page of the run is stored; or, with ``resume_after``, the run is alive but waits (a provider's
    Retry-After, a spent daily quota) and goes on at that time, so no progress is due before it."""

    v: Literal[1] = 1
    run_id: str
    integration_id: str
    page: int
    calls_published: int
    # Of those, the calls CALLS_RAW already held byte for byte (a re-read of an unchanged call,
    # deduplicated by Nats-Msg-Id): stored before, so the normalizer reports nothing for them.
    calls_already_received: int = 0
    checkpoint: str | None = None
    resume_after: datetime | None = None
    waiting_for: str | None = None
    at: datetime


class SyncFinished(msgspec.Struct, kw_only=True, frozen=True, tag="finished", tag_field="kind"):
    v: Literal[1] = 1
    run_id: str
    integration_id: str
    status: Literal["success", "error", "reauth_required"]
    pages: int
    calls_published: int
    calls_already_received: int = 0
    checkpoint: str | None = None
    watermark: datetime | None = None
    error: str | None = None
    at: datetime


class SyncStored(msgspec.Struct, kw_only=True, frozen=True, tag="stored", tag_field="kind"):
    """What the normalizer made of a batch of one run's raw calls (``sync.events.stored.<provider>``,
    published by the normalizer after the batch committed): messages ``created``, ``updated``, and
    ``unchanged`` (already stored as they are). ``batch`` names the batch (its raw events' stream
    sequences), so the scheduler adds each batch once however often it is delivered. A call
    published twice within the raw stream's duplicate window (two runs reading the same meeting)
    reaches the normalizer once: a run's counts may stay below its ``calls_published``."""

    v: Literal[1] = 1
    run_id: str
    integration_id: str
    batch: str
    created: int
    updated: int
    unchanged: int
    at: datetime


SyncEvent = SyncProgress | SyncFinished | SyncStored


class CallsListed(msgspec.Struct, kw_only=True, frozen=True):
    """Every call the provider listed in ``window`` (by its list filter: Fathom ``created_at``,
    Gong start time), published to ``calls.listed.<source>.<integration_id>`` by a reconciling
    pull run that read the window completely: every page answered, no limit, every listed call's
    id read. Never sent for a run that stopped early (a failed page, a quota stop): what a
    complete listing lacks is gone at the provider, what an incomplete one lacks is unknown.

    ``listed_at`` is when the listing began: a message observed after it is newer than the
    listing and is never judged by it."""

    v: Literal[1] = 1
    run_id: str
    integration_id: str
    workspace_id: WorkspaceId
    source: Source
    window: TimeWindow
    listed_at: datetime
    external_ids: list[str]
    # Listed, but the provider answered 404 for the call's recording (Fathom: its transcript and
    # its summary both): gone there all the same.
    gone_external_ids: list[str] = []


class MessageDeleted(msgspec.Struct, kw_only=True, frozen=True):
    """A message became a tombstone (``messages.deleted.<source>``): its content, metadata,
    participants and data points are erased; its id stays known (the linker answers 410 Gone
    with the reason). Subscribers forget what they kept of it. ``version`` is the tombstone's,
    after every version ``MessageUpserted`` announced.

    An erasure (reason ``erased``) keeps nothing: the row is deleted (the linker answers 404) and
    the event names the message by its callstream id only, ``external_id`` null, because the
    provider's call id is among what was asked to be forgotten."""

    v: Literal[1] = 1
    message_id: str
    workspace_id: WorkspaceId
    source: Source
    external_id: str | None
    reason: DeletionReason
    deleted_at: datetime
    version: int


class LinkSources(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The stored ``message_metadata`` keys a message's link is resolved from, as committed with
    the version an event announces: a consumer can resolve the link without reading the row."""

    recording_url: str | None = None
    share_url: str | None = None
    url: str | None = None
    call_id: str | None = None


class MessageUpserted(msgspec.Struct, kw_only=True, frozen=True):
    """A message was stored or changed. Small on purpose, whatever the provider sent: no transcript,
    link fields vetted. ``link_sources`` is absent when the stored keys are not all strings, or one
    of them does not pass the link rule (resolve from the row then)."""

    v: Literal[1] = 1
    message_id: str
    workspace_id: WorkspaceId
    source: Source
    external_id: str
    customer_id: str | None = None
    title: str | None = None
    sent_at: datetime | None = None
    # Vetted by the link rule (``vet_url``, the linker's): a URL a provider sent that is not safe to
    # hand out, or too long, is null here and ``link_reason`` says why; the row's metadata keeps what
    # was sent.
    link_url: str | None = None
    change: Change
    version: int
    link_sources: LinkSources | None = None
    link_reason: LinkReason | None = None


class MessageRef(msgspec.Struct, kw_only=True, frozen=True):
    """A message named either by its id or by its provider identity."""

    message_id: str | None = None
    source: Source | None = None
    external_id: str | None = None


class FeatureLinked(msgspec.Struct, kw_only=True, frozen=True):
    v: Literal[1] = 1
    workspace_id: WorkspaceId
    feature_id: str
    feature_name: str | None = None
    message: MessageRef


class FeatureUnlinked(msgspec.Struct, kw_only=True, frozen=True):
    """A message is no longer linked to a feature (``features.unlinked``). The same stream and
    consumer as ``FeatureLinked``, so a link and an unlink are applied in the order they were
    published; unlinking what is not linked changes nothing."""

    v: Literal[1] = 1
    workspace_id: WorkspaceId
    feature_id: str
    message: MessageRef


ErasureScope = Literal["integration", "workspace"]
ErasureService = Literal["gateway", "normalizer", "scheduler"]


class ErasureRequested(msgspec.Struct, kw_only=True, frozen=True):
    """Erase everything of these integrations (``erasures.requested``; the gateway publishes it
    for ``DELETE /v1/integrations/{id}?erase=true`` and ``DELETE /v1/workspaces/{id}``).

    Each service erases what it keeps and answers with :class:`ErasureFinished`; the gateway keeps
    the job's state (``GET /v1/erasures/{erasure_id}``). ``integration_ids`` are every integration
    of the scope (a workspace's, disabled ones included); a ``workspace`` erasure also takes what
    belongs to the workspace rather than to one integration (features, customers, settings,
    tokens). Idempotent: the same request again erases what is left and reports the same counts."""

    v: Literal[1] = 1
    erasure_id: str
    scope: ErasureScope
    workspace_id: WorkspaceId
    integration_ids: list[str]
    requested_at: datetime


class ErasureFinished(msgspec.Struct, kw_only=True, frozen=True):
    """One service's part of an erasure is done (``erasures.finished.<service>``), with how many
    of each kind it erased (``messages``, ``contacts``, ``raw_events``, ``sync_runs``, ...).
    Counts only: never an id or a name of what was erased."""

    v: Literal[1] = 1
    erasure_id: str
    service: ErasureService
    counts: dict[str, int]
    finished_at: datetime


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """What a consumer could never process, published to ``dlq.<consumer>``."""

    v: Literal[1] = 1
    consumer: str
    subject: str
    stream_sequence: int
    headers: dict[str, str] = {}
    data: bytes
    error: str
    delivery_count: int
    failed_at: datetime
