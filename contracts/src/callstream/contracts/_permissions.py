"""Who may publish and subscribe what on NATS: one identity per service, derived from the subject
table (:mod:`._subjects`), and rendered as nats-server's ``authorization`` block.

The one place the permissions are written down: the dev stack, the test servers, compose and the
Kubernetes NATS values all render :func:`authorization_config`, and a test compares the deploy files
with it. No I/O here.

Each service may publish to the streams it writes, pull from its own durable consumers (create,
info, next, ack, dead-letter), read stream metadata, and use its own KV buckets. Nobody but the
operator may delete a stream, read another service's consumer, or subscribe to a stream's subjects
directly; the normalizer alone may purge ``CALLS_RAW`` by subject and delete single events from
the streams that name messages, because it carries out erasures. Replies come to a per-identity inbox prefix (``_INBOX_<identity>``), so one
service cannot listen to the replies (and pulled messages) of another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import msgspec

from ._subjects import (
    CALLS_RAW,
    DATAPOINTS,
    DLQ,
    ERASURES,
    ERASURES_REQUESTED,
    FEATURES,
    GATEWAY_ERASURES_CONSUMER,
    GATEWAY_PULL_CONSUMER,
    MESSAGES,
    NORMALIZER_CONSUMER,
    NORMALIZER_DATAPOINTS_CONSUMER,
    NORMALIZER_ERASURES_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    NORMALIZER_LISTINGS_CONSUMER,
    SCHEDULER_CONSUMER,
    SCHEDULER_ERASURES_CONSUMER,
    STREAMS,
    SYNC,
    SYNC_EVENTS,
    ConsumerSpec,
    dlq_subject,
    erasures_finished_subject,
)

NATS_OPERATOR = "operator"
"""People and tools (``nats`` CLI, nats-py scripts, ``setup``): everything, like the server's owner."""

NATS_SERVICES = ("gateway", "normalizer", "linker", "scheduler")

# The gateway's KV buckets (its CALLSTREAM_GATEWAY_PULL_CHECKPOINT_BUCKET / _QUOTA_BUCKET defaults):
# a renamed bucket needs its name here too.
GATEWAY_KV_BUCKETS = ("gateway_pull_checkpoints", "gateway_pull_quota")
# Dead letters of the normalizer's outbox relay (no consumer of its own: rows it could not publish).
NORMALIZER_OUTBOX_DEAD_LETTERS = "normalizer-outbox"


class NatsPermissions(msgspec.Struct, frozen=True, kw_only=True):
    """Allow lists (nats-server denies everything else)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


class _Needs(msgspec.Struct, frozen=True, kw_only=True):
    """What a service does on NATS, in the subject table's terms."""

    writes: tuple[str, ...] = ()  # streams it publishes to (every subject of the stream)
    publishes: tuple[str, ...] = ()  # single subjects it publishes to (not the whole stream)
    consumes: tuple[ConsumerSpec, ...] = ()  # its durable pull consumers
    declares: tuple[str, ...] = ()  # streams it creates or updates at start
    ephemeral_on: tuple[str, ...] = ()  # streams it reads with short-lived consumers of its own
    ordered_on: tuple[str, ...] = ()  # streams it follows with an ordered (push) consumer
    dead_letters: tuple[str, ...] = ()  # extra dlq.<name> subjects besides its consumers'
    get_from: tuple[str, ...] = ()  # streams it reads single messages from (by sequence)
    delete_from: tuple[str, ...] = ()  # streams it deletes single messages from
    purge_from: tuple[str, ...] = ()  # streams it purges by subject filter
    kv_buckets: tuple[str, ...] = ()


_NEEDS: dict[str, _Needs] = {
    "gateway": _Needs(
        writes=(CALLS_RAW, SYNC_EVENTS),
        # An erasure is asked for by the gateway's API; its own part is reported like the others'.
        publishes=(ERASURES_REQUESTED, erasures_finished_subject("gateway")),
        consumes=(GATEWAY_PULL_CONSUMER, GATEWAY_ERASURES_CONSUMER),
        get_from=(SYNC,),  # is a run's request still there? (withdrawn: the run was cancelled)
        kv_buckets=GATEWAY_KV_BUCKETS,
    ),
    "normalizer": _Needs(
        # MESSAGES from its outbox; CALLS_RAW, FEATURES and DATAPOINTS only to redrive its own
        # dead letters to where they came from.
        writes=(MESSAGES, CALLS_RAW, FEATURES, DATAPOINTS),
        # SyncStored: what it made of each pull run's calls, beside the gateway's progress events
        publishes=(erasures_finished_subject("normalizer"), "sync.events.stored.*"),
        consumes=(
            NORMALIZER_CONSUMER,
            NORMALIZER_LISTINGS_CONSUMER,
            NORMALIZER_FEATURES_CONSUMER,
            NORMALIZER_DATAPOINTS_CONSUMER,
            NORMALIZER_ERASURES_CONSUMER,
        ),
        # ERASURES: without it an erasure asked for before `setup` ran again would wait unseen
        declares=(CALLS_RAW, MESSAGES, FEATURES, DATAPOINTS, DLQ, ERASURES),
        ephemeral_on=(CALLS_RAW,),  # replay
        # an erasure reads every stream that names messages or integrations (create-only: no other
        # consumer of those streams can be read, changed or deleted with it)
        ordered_on=(CALLS_RAW, MESSAGES, FEATURES, DATAPOINTS, DLQ, SYNC_EVENTS),
        dead_letters=(NORMALIZER_OUTBOX_DEAD_LETTERS,),
        get_from=(DLQ,),  # dlq list / show
        # dlq redrive / drop; an erasure's events in the others
        delete_from=(DLQ, CALLS_RAW, MESSAGES, FEATURES, DATAPOINTS, SYNC_EVENTS),
        purge_from=(CALLS_RAW,),  # an erased integration's calls.raw.*.<id> and calls.listed.*.<id>
    ),
    "linker": _Needs(
        writes=(FEATURES, DATAPOINTS),
        ordered_on=(MESSAGES,),  # the cache follows messages.> to drop stale entries
    ),
    "scheduler": _Needs(
        writes=(SYNC,),
        publishes=(erasures_finished_subject("scheduler"),),
        consumes=(SCHEDULER_CONSUMER, SCHEDULER_ERASURES_CONSUMER),
        delete_from=(SYNC,),  # a cancelled run's request leaves the work queue
    ),
}


def inbox_prefix(identity: str) -> str:
    """The reply-subject prefix an identity uses (nats-py ``inbox_prefix``) and may subscribe to."""
    return f"_INBOX_{identity}"


def _stream_subjects(name: str) -> tuple[str, ...]:
    for spec in STREAMS:
        if spec.name == name:
            return spec.subjects
    raise KeyError(name)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def nats_permissions(identity: str) -> NatsPermissions | None:
    """The allow lists of ``identity``; ``None`` for the operator (everything)."""
    if identity == NATS_OPERATOR:
        return None
    needs = _NEEDS[identity]
    api = "$JS.API"
    pub: list[str] = [f"{api}.INFO", f"{api}.STREAM.NAMES"]
    pub += [f"{api}.STREAM.INFO.{s.name}" for s in STREAMS]  # metadata and counts, never contents
    for stream in needs.writes:
        pub += _stream_subjects(stream)
    pub += needs.publishes
    for stream in needs.declares:
        pub += [f"{api}.STREAM.CREATE.{stream}", f"{api}.STREAM.UPDATE.{stream}"]
    for c in needs.consumes:
        pub += [
            f"{api}.CONSUMER.CREATE.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.CREATE.{c.stream}.{c.durable}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.INFO.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.MSG.NEXT.{c.stream}.{c.durable}",
            f"$JS.ACK.{c.stream}.{c.durable}.>",
            dlq_subject(c.durable),
        ]
    pub += [dlq_subject(name) for name in needs.dead_letters]
    for stream in needs.ephemeral_on:
        pub += [
            f"{api}.CONSUMER.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.*",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.*",
            f"{api}.CONSUMER.DELETE.{stream}.*",
            f"$JS.ACK.{stream}.>",
        ]
    for stream in needs.ordered_on:
        # An ordered consumer is ephemeral and push: created (again after a gap), flow-controlled.
        pub += [f"{api}.CONSUMER.CREATE.{stream}", f"{api}.CONSUMER.CREATE.{stream}.>", f"$JS.FC.{stream}.>"]
    pub += [f"{api}.STREAM.MSG.GET.{s}" for s in needs.get_from]
    pub += [f"{api}.STREAM.MSG.DELETE.{s}" for s in needs.delete_from]
    pub += [f"{api}.STREAM.PURGE.{s}" for s in needs.purge_from]
    for bucket in needs.kv_buckets:
        kv = f"KV_{bucket}"
        pub += [
            f"$KV.{bucket}.>",
            f"{api}.STREAM.INFO.{kv}",
            f"{api}.STREAM.CREATE.{kv}",
            f"{api}.STREAM.MSG.GET.{kv}",
            f"{api}.DIRECT.GET.{kv}.>",
            f"{api}.CONSUMER.CREATE.{kv}",
            f"{api}.CONSUMER.CREATE.{kv}.>",
        ]
    return NatsPermissions(publish=_unique(pub), subscribe=(f"{inbox_prefix(identity)}.>",))


def nats_identities() -> tuple[str, ...]:
    return (NATS_OPERATOR, *NATS_SERVICES)


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a nats-server config string ("$..." stays literal)


def authorization_config(passwords: Mapping[str, str], *, raw: bool = False) -> str:
    """nats-server's ``authorization`` block for every identity.

    ``passwords`` maps an identity to its password: a plain or bcrypt (``$2a$...``) value, quoted;
    with ``raw=True`` it is written as given (``$GATEWAY_NATS_PASSWORD``: an environment variable
    the server expands, as compose and the Helm values do)."""
    users = []
    for identity in nats_identities():
        password = passwords[identity] if raw else _quote(passwords[identity])
        perms = nats_permissions(identity)
        if perms is None:
            users.append(f"    {{user: {_quote(identity)}, password: {password}}}")
            continue
        publish = ", ".join(_quote(s) for s in perms.publish)
        subscribe = ", ".join(_quote(s) for s in perms.subscribe)
        users.append(
            f"    {{user: {_quote(identity)}, password: {password}, permissions: {{\n"
            f"      publish: {{allow: [{publish}]}},\n"
            f"      subscribe: {{allow: [{subscribe}]}}\n"
            f"    }}}}"
        )
    return "authorization {\n  users: [\n" + ",\n".join(users) + "\n  ]\n}\n"
