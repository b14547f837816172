"""A Gong call bundle (``/v2/calls/extensive`` item + its transcript) to a message. Pure: no I/O.

CRM context: only ``system == HubSpot`` counts; ``Account`` and ``Company``, ``Deal`` and
``Opportunity``, ``Contact`` and ``Lead`` are the same things, and field names are matched
case-insensitively against their known spellings, because Gong's spec and HubSpot's names disagree
(shared/providers/gong.md, open question 1). Every field is also kept under its own name.

Metadata (shared/DESIGN.md § Message metadata): ``hubspot_context`` ``{accounts: [{object_id,
domain, name, industry, website, all_fields}], deals: [{object_id, name, amount, stage, close_date,
probability, all_fields}], contacts: [{object_id, name, email, title, all_fields}]}`` (empty lists
without CRM context; amount and probability numbers or null); ``participants`` the names,
``participant_details`` the parties; ``url`` vetted by the link rule or null; ``talk_time``
(``_talk_time.py``) and ``interaction_stats`` (Gong's own ``{name: value}``); ``raw_call_data`` and
``transcript_data`` as Gong sent them. ``ai_insights``: see :func:`_insights`.
"""

from __future__ import annotations

from typing import Any

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, GongCallBundle, HostAllowList, RawCall
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
    METADATA_VERSION,
    MappedCustomer,
    MappedMessage,
    MappedParticipant,
    UnmappableError,
    ai_insights,
    clean_text,
    encode_json,
    https_host,
    link_refused,
    parse_time,
    safe_url,
)
from ._talk_time import Speaker, talk_time

CHANNEL = "Gong"
UNKNOWN_SPEAKER = "Unknown speaker"
_ACCOUNT_TYPES = frozenset({"account", "company"})
_DEAL_TYPES = frozenset({"deal", "opportunity"})
_CONTACT_TYPES = frozenset({"contact", "lead"})


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


# The known spellings of each key, matched case-insensitively: HubSpot property names (``domain``,
# ``dealname``, ``dealstage``, ``closedate``, ``jobtitle``), Gong's documented Salesforce-style ones
# (``Name``, ``StageName``, ``CloseDate``, ``Amount``, ``Probability``) and plain ones.
_ACCOUNT_KEYS = {
    "domain": ("domain", "domain_name", "company_domain"),
    "name": ("name", "account_name", "accountname", "company_name", "companyname"),
    "industry": ("industry",),
    "website": ("website", "company_website"),
}
_DEAL_KEYS = {
    "name": ("dealname", "deal_name", "name", "opportunity_name", "opportunityname"),
    "amount": ("amount", "deal_amount", "amount_in_home_currency"),
    "stage": ("dealstage", "stagename", "stage", "deal_stage", "stage_name"),
    "close_date": ("closedate", "close_date"),
    "probability": ("probability", "hs_deal_stage_probability", "deal_probability"),
}
_CONTACT_KEYS = {
    "name": ("name", "fullname", "full_name"),
    "email": ("email", "emailaddress", "email_address", "hs_email"),
    "title": ("jobtitle", "job_title", "title"),
}


def _all_fields(obj: GongContextObject) -> dict[str, Any]:
    """Every CRM field by its own name (MRR, ARR and custom fields live here)."""
    return {f.name: f.value for f in obj.fields or () if f.name}


def _pick(fields: dict[str, Any], names: tuple[str, ...]) -> Any:
    lowered = {k.lower(): v for k, v in fields.items()}
    for name in names:
        value = lowered.get(name)
        if value is not None and value != "":
            return value
    return None


def _number(value: Any) -> int | float | None:
    """A CRM amount or probability as a number: ``48500``, ``"48,500.00"``, ``"12.5%"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number: float = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "").removesuffix("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _account(obj: GongContextObject) -> dict[str, Any]:
    fields = _all_fields(obj)
    website = _web_address(_text(_pick(fields, _ACCOUNT_KEYS["website"])))
    return {
        "object_id": obj.object_id,
        "domain": _domain_from(_text(_pick(fields, _ACCOUNT_KEYS["domain"]))) or _domain_from(website),
        "name": _text(_pick(fields, _ACCOUNT_KEYS["name"])),
        "industry": _text(_pick(fields, _ACCOUNT_KEYS["industry"])),
        "website": website,
        "all_fields": fields,
    }


def _deal(obj: GongContextObject) -> dict[str, Any]:
    fields = _all_fields(obj)
    return {
        "object_id": obj.object_id,
        "name": _text(_pick(fields, _DEAL_KEYS["name"])),
        "amount": _number(_pick(fields, _DEAL_KEYS["amount"])),
        "stage": _text(_pick(fields, _DEAL_KEYS["stage"])),
        "close_date": _text(_pick(fields, _DEAL_KEYS["close_date"])),
        "probability": _number(_pick(fields, _DEAL_KEYS["probability"])),
        "all_fields": fields,
    }


def _contact(obj: GongContextObject, party: GongParty | None = None) -> dict[str, Any]:
    fields = _all_fields(obj)
    name = _text(_pick(fields, _CONTACT_KEYS["name"]))
    if name is None:
        first, last = _text(_pick(fields, ("firstname", "first_name"))), _text(_pick(fields, ("lastname", "last_name")))
        name = " ".join(n for n in (first, last) if n) or None
    return {
        "object_id": obj.object_id,
        "name": name or (clean_text(party.name) if party else None),
        "email": _text(_pick(fields, _CONTACT_KEYS["email"])) or (party.email_address if party else None),
        "title": _text(_pick(fields, _CONTACT_KEYS["title"])) or (clean_text(party.title) if party else None),
        "all_fields": fields,
    }


def _unique(found: list[tuple[GongContextObject, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per CRM object: with both timings requested Gong sends each twice; keep ``Now``."""
    chosen: dict[tuple[str, str], tuple[GongContextObject, dict[str, Any]]] = {}
    for i, (obj, record) in enumerate(found):
        key = ((obj.object_type or "").lower(), obj.object_id if obj.object_id is not None else f"#{i}")
        if key not in chosen or (obj.timing == "Now" and chosen[key][0].timing != "Now"):
            chosen[key] = (obj, record)
    return [record for _, record in chosen.values()]


def hubspot_context(call: GongCall) -> dict[str, list[dict[str, Any]]]:
    """``{accounts, deals, contacts}`` in the shapes readers expect (shared/DESIGN.md § Message
    metadata); empty lists when the call has no HubSpot context."""
    objects = _hubspot(call.context)
    accounts = [(o, _account(o)) for o in objects if (o.object_type or "").lower() in _ACCOUNT_TYPES]
    deals = [(o, _deal(o)) for o in objects if (o.object_type or "").lower() in _DEAL_TYPES]
    contacts = [(o, _contact(o)) for o in objects if (o.object_type or "").lower() in _CONTACT_TYPES]
    for party in call.parties or ():
        for obj in _hubspot(party.context):
            if (obj.object_type or "").lower() in _CONTACT_TYPES:
                contacts.append((obj, _contact(obj, party)))
    # "Now" first, so the customer is chosen from today's CRM values when both timings came.
    accounts.sort(key=lambda pair: pair[0].timing != "Now")
    return {"accounts": _unique(accounts), "deals": _unique(deals), "contacts": _unique(contacts)}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (list, dict)):
        return None
    return clean_text(str(value)).strip() or None  # type: ignore[union-attr]


def _web_address(value: str | None) -> str | None:
    """A company's website as readers render it, a link: an ``http(s)`` address or a bare host,
    else null. CRM fields are free text anyone with CRM access can set, and a ``javascript:`` or
    ``data:`` value would run in the reader's UI; the value as sent stays in ``all_fields``.
    (Not the link allow list: that names the providers' hosts, never a customer's.)"""
    if value is None or any(ch.isspace() or ch in "\"'<>`\\" for ch in value):
        return None
    scheme, sep, _ = value.partition("://")
    if sep:
        return value if scheme.lower() in ("http", "https") and _domain_from(value) else None
    return value if ":" not in value.split("/", 1)[0] and _domain_from(value) else None


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
    for account in context["accounts"]:
        domain = account["domain"] or _external_domain(call)
        if domain is None:
            continue
        fields = {k.lower(): v for k, v in account["all_fields"].items()}
        return MappedCustomer(
            domain=domain,
            name=account["name"] or name_from_domain(domain),
            industry=account["industry"],
            website=account["website"],
            external_system="hubspot",
            external_id=_text(account["object_id"]),
            attributes_json=encode_json(
                {"fields": fields, "all_fields": account["all_fields"], "deals": context["deals"]}
            ),
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


def _participant_names(call: GongCall) -> list[str]:
    """``participants`` as readers expect it: a list of names (the address when a party has no
    name; parties with neither, e.g. a bare phone number, only in ``participant_details``)."""
    return [name for p in call.parties or () if (name := clean_text(p.name) or p.email_address)]


def _participant_details(call: GongCall) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "email": p.email_address,
            "title": p.title,
            "affiliation": p.affiliation,
            "speaker_id": p.speaker_id,
            "user_id": p.user_id,
            "methods": p.methods,
            "phone_number": p.phone_number,
        }
        for p in call.parties or ()
    ]


def _speakers(call: GongCall) -> dict[str, Speaker]:
    return {
        p.speaker_id: Speaker(clean_text(p.name), p.email_address, (p.affiliation or "unknown").lower())
        for p in reversed(call.parties or ())  # the first party of a speaker id wins
        if p.speaker_id
    }


def _talk_time(call: GongCall, transcript: GongCallTranscript | None) -> dict[str, Any] | None:
    """From the sentences' timings (milliseconds from the call start, gong.md §2.3)."""
    if transcript is None:
        return None
    segments = [
        (monologue.speaker_id or "", sentence.start / 1000, sentence.end / 1000)
        for monologue in transcript.transcript or ()
        for sentence in monologue.sentences or ()
        if sentence.start is not None and sentence.end is not None
    ]
    return talk_time(segments, _speakers(call))


def _interaction_stats(call: GongCall) -> dict[str, Any] | None:
    """Gong's own ``interaction.interactionStats`` as ``{name: value}`` ("Talk Ratio",
    "Longest Monologue", "Interactivity", "Patience", ...); null when Gong sent none."""
    stats = (call.interaction or {}).get("interactionStats")
    if not isinstance(stats, list):
        return None
    found = {
        item["name"]: item.get("value")
        for item in stats
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]
    }
    return found or None


def _strings(items: Any, key: str) -> list[str]:
    return (
        [t for item in items if isinstance(item, dict) and (t := _text(item.get(key)))]
        if isinstance(items, list)
        else []
    )


def _seconds(value: Any) -> float | None:
    number = _number(value)
    return float(number) if number is not None and number >= 0 else None


def _insights(call: GongCall) -> dict[str, Any]:
    """Gong's spotlight (``content``) in the shared ``ai_insights`` shape: the brief, key points,
    the action items of ``pointsOfInterest`` (said by a speaker, at a second), topics that took time,
    the call outcome's name."""
    content = call.content or {}
    speakers = _speakers(call)
    points = content.get("pointsOfInterest")
    action_items = []
    for item in (points.get("actionItems") if isinstance(points, dict) else None) or ():
        if not isinstance(item, dict) or not (text := _text(item.get("snippet"))):
            continue
        speaker = speakers.get(str(item.get("speakerID") or item.get("speakerId") or ""))
        action_items.append(
            {
                "text": text,
                "assignee": (speaker.name or speaker.email) if speaker else None,
                "t": _seconds(item.get("snippetStartTime")),
            }
        )
    topics = content.get("topics")
    outcome = content.get("callOutcome")
    return ai_insights(
        summary=_text(content.get("brief")),
        key_points=_strings(content.get("keyPoints"), "text"),
        action_items=action_items,
        topics=[
            name
            for t in topics or ()
            if isinstance(t, dict) and (name := _text(t.get("name"))) and (_number(t.get("duration")) or 0) > 0
        ]
        if isinstance(topics, list)
        else [],
        outcome=(_text(outcome.get("name")) or _text(outcome.get("category"))) if isinstance(outcome, dict) else None,
    )


def map_gong(raw: RawCall, links: HostAllowList = DEFAULT_LINK_ALLOW_LIST) -> MappedMessage:
    call, transcript, bundle = decode_bundle(raw.payload)
    meta = call.meta_data
    # A private call keeps its metadata but never what was said, whatever the sender included.
    private = meta.is_private is True
    content = "" if private else transcript_text(call, transcript)
    context = hubspot_context(call)
    host = next((p for p in call.parties or () if meta.primary_user_id and p.user_id == meta.primary_user_id), None)
    metadata: dict[str, Any] = {
        "metadata_version": METADATA_VERSION,
        "call_id": meta.id,
        "title": meta.title,
        "scheduled": meta.scheduled,
        "started": meta.started,
        "duration_seconds": meta.duration,
        "participants": _participant_names(call),
        "participant_details": _participant_details(call),
        "has_transcript": bool(content),
        "hubspot_context": context,
        # Readers render it as it is: the linker's rule or null (the sent value stays in raw_call_data).
        "url": safe_url(meta.url, links),
        "direction": meta.direction,
        "system": meta.system,
        "scope": meta.scope,
        "language": meta.language,
        "talk_time": None if private else _talk_time(call, transcript),
        "interaction_stats": _interaction_stats(call),
        "raw_call_data": bundle.call,
        "transcript_data": None if private else bundle.transcript,
    }
    if private:
        metadata["private"] = True
    refused = link_refused(meta.url, links)
    if refused is not None:
        metadata["link_refused"] = refused
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
        ai_insights_json=None if private else encode_json(_insights(call)),
        link_url=meta.url,
        provider_host=host_name if host_name and host_name.endswith(".gong.io") else None,
        observed_at=raw.received_at,
        traceparent=raw.traceparent,
        run_id=raw.run_id,
        participants=_participants(call),
        customer=_customer(call, context),
        withheld=private,
    )
