"""A Gong call bundle (``/v2/calls/extensive`` item + its transcript) to a message. Pure: no I/O.

CRM context: only ``system == HubSpot`` counts; ``Deal`` and ``Opportunity`` are the same thing and
field names are matched case-insensitively, because Gong's spec and HubSpot's names disagree
(shared/providers/gong.md, open question 1).
"""

from __future__ import annotations

from typing import Any

from callstream.contracts import GongCallBundle, RawCall
from callstream.contracts.providers import (
    GongCall,
    GongCallTranscript,
    GongContext,
    GongContextObject,
    GongParty,
    PayloadRejected,
    decode_gong_bundle,
)

from ._domains import domain_of, most_frequent_company_domain, name_from_domain, normalize_domain
from ._mapped import (
    MappedCustomer,
    MappedMessage,
    MappedParticipant,
    UnmappableError,
    clean_text,
    encode_json,
    https_host,
    parse_time,
)

CHANNEL = "Gong"
UNKNOWN_SPEAKER = "Unknown speaker"
_DEAL_TYPES = frozenset({"deal", "opportunity"})
_CONTACT_TYPES = frozenset({"contact", "lead"})
_INSIGHT_KEYS = ("brief", "keyPoints", "highlights", "callOutcome", "topics", "outline")


def decode_bundle(payload: bytes) -> tuple[GongCall, GongCallTranscript | None, GongCallBundle]:
    """By the rule the gateway applies before it publishes a call (one implementation, in contracts)."""
    try:
        return decode_gong_bundle(payload)
    except PayloadRejected as exc:
        raise UnmappableError(exc.detail) from None


def _speaker_names(parties: list[GongParty]) -> dict[str, str]:
    names: dict[str, str] = {}
    for party in parties:
        if party.speaker_id and (party.name or party.email_address):
            names.setdefault(party.speaker_id, party.name or party.email_address or UNKNOWN_SPEAKER)
    return names


def transcript_text(call: GongCall, transcript: GongCallTranscript | None) -> str:
    if transcript is None:
        return ""
    names = _speaker_names(call.parties or [])
    lines = []
    for monologue in transcript.transcript or ():
        text = " ".join(s.text for s in monologue.sentences or () if s.text)
        if text:
            lines.append(f"{names.get(monologue.speaker_id or '', UNKNOWN_SPEAKER)}: {text}")
    return clean_text("\n".join(lines)) or ""


def _hubspot(contexts: list[GongContext] | None) -> list[GongContextObject]:
    return [
        obj
        for ctx in contexts or ()
        if (ctx.system or "").lower() == "hubspot"
        for obj in ctx.objects or ()
        if obj is not None
    ]


def _as_record(obj: GongContextObject, **extra: Any) -> dict[str, Any]:
    fields = {(f.name or "").lower(): f.value for f in obj.fields or () if f.name}
    return {"id": obj.object_id, "type": obj.object_type, "timing": obj.timing, "fields": fields, **extra}


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per CRM object: with both timings requested Gong sends each twice; keep ``Now``."""
    chosen: dict[tuple[Any, Any], dict[str, Any]] = {}
    for i, record in enumerate(records):
        key = (str(record["type"]).lower(), record["id"] if record["id"] is not None else f"#{i}")
        if key not in chosen or (record["timing"] == "Now" and chosen[key]["timing"] != "Now"):
            chosen[key] = record
    return list(chosen.values())


def hubspot_context(call: GongCall) -> dict[str, list[dict[str, Any]]]:
    objects = _hubspot(call.context)
    accounts = _unique([_as_record(o) for o in objects if (o.object_type or "").lower() == "account"])
    deals = _unique([_as_record(o) for o in objects if (o.object_type or "").lower() in _DEAL_TYPES])
    contacts = [_as_record(o) for o in objects if (o.object_type or "").lower() in _CONTACT_TYPES]
    for party in call.parties or ():
        for obj in _hubspot(party.context):
            if (obj.object_type or "").lower() in _CONTACT_TYPES:
                contacts.append(_as_record(obj, email=party.email_address, name=party.name))
    return {"accounts": accounts, "deals": deals, "contacts": _unique(contacts)}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (list, dict)):
        return None
    return clean_text(str(value)).strip() or None  # type: ignore[union-attr]


def _domain_from(value: str | None) -> str | None:
    """``https://www.harborline.example/about`` or ``harborline.example`` -> ``harborline.example``."""
    if not value:
        return None
    host = value.strip().lower().split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split(":", 1)[0]
    return normalize_domain(host.removeprefix("www."))


def _external_domain(call: GongCall) -> str | None:
    return most_frequent_company_domain(
        domain_of(p.email_address) for p in call.parties or () if (p.affiliation or "").lower() == "external"
    )


def _customer(call: GongCall, context: dict[str, list[dict[str, Any]]]) -> MappedCustomer | None:
    accounts = sorted(context["accounts"], key=lambda a: a["timing"] != "Now")
    for account in accounts:
        fields = account["fields"]
        domain = (
            _domain_from(_text(fields.get("domain")))
            or _domain_from(_text(fields.get("website")))
            or _external_domain(call)
        )
        if domain is None:
            continue
        return MappedCustomer(
            domain=domain,
            name=_text(fields.get("name")) or name_from_domain(domain),
            industry=_text(fields.get("industry")),
            website=_text(fields.get("website")),
            external_system="hubspot",
            external_id=_text(account["id"]),
            attributes_json=encode_json({"fields": fields, "deals": context["deals"]}),
        )
    domain = _external_domain(call)
    if domain is None:
        return None
    return MappedCustomer(domain=domain, name=name_from_domain(domain))


def _participants(call: GongCall) -> tuple[MappedParticipant, ...]:
    primary = call.meta_data.primary_user_id
    return tuple(
        MappedParticipant(
            name=clean_text(p.name),
            email=p.email_address,
            affiliation=(p.affiliation or "unknown").lower(),
            speaker_id=p.speaker_id,
            role="host"
            if primary and p.user_id == primary
            else ("attendee" if "Attendee" in (p.methods or ()) else "invitee"),
            title=clean_text(p.title),
        )
        for p in call.parties or ()
    )


def map_gong(raw: RawCall) -> MappedMessage:
    call, transcript, bundle = decode_bundle(raw.payload)
    meta = call.meta_data
    # A private call keeps its metadata but never what was said, whatever the sender included.
    private = meta.is_private is True
    content = "" if private else transcript_text(call, transcript)
    context = hubspot_context(call)
    host = next((p for p in call.parties or () if meta.primary_user_id and p.user_id == meta.primary_user_id), None)
    metadata: dict[str, Any] = {
        "call_id": meta.id,
        "title": meta.title,
        "scheduled": meta.scheduled,
        "started": meta.started,
        "duration_seconds": meta.duration,
        "participants": [
            {
                "name": p.name,
                "email": p.email_address,
                "title": p.title,
                "affiliation": p.affiliation,
                "speaker_id": p.speaker_id,
                "user_id": p.user_id,
                "methods": p.methods,
            }
            for p in call.parties or ()
        ],
        "has_transcript": bool(content),
        "hubspot_context": context,
        "url": meta.url,
        "direction": meta.direction,
        "system": meta.system,
        "scope": meta.scope,
        "language": meta.language,
        "raw_call_data": bundle.call,
        "transcript_data": None if private else bundle.transcript,
    }
    if private:
        metadata["private"] = True
    insights = {} if private else {k: v for k, v in (call.content or {}).items() if k in _INSIGHT_KEYS and v}
    host_name = https_host(meta.url)
    return MappedMessage(
        workspace_id=raw.workspace_id,
        source="gong",
        external_id=meta.id,
        integration_id=raw.integration_id,
        title=clean_text(meta.title),
        content=content,
        channel_name=CHANNEL,
        channel_id=raw.integration_id,
        author_name=clean_text(host.name) if host else None,
        author_id=meta.primary_user_id,
        author_email=host.email_address if host else None,
        sent_at=parse_time(meta.started) or parse_time(meta.scheduled),
        metadata_json=encode_json(metadata),
        ai_insights_json=encode_json(insights) if insights else None,
        link_url=meta.url,
        provider_host=host_name if host_name and host_name.endswith(".gong.io") else None,
        observed_at=raw.received_at,
        traceparent=raw.traceparent,
        participants=_participants(call),
        customer=_customer(call, context),
        withheld=private,
    )
