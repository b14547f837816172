"""Mapping of the provider examples in shared/providers/ to messages, participants and customers."""

from __future__ import annotations

import msgspec
import pytest

from callstream.normalizer._domains import is_company_domain, most_frequent_company_domain, name_from_domain
from callstream.normalizer._mapped import UnmappableError
from callstream.normalizer._mapping import map_raw_call

FATHOM_KEYS = {
    "session_id", "title", "recording_url", "url", "user_email", "user_name", "duration_seconds", "created_at",
    "tags", "has_transcript", "summary", "action_items", "invitees", "raw_session_data", "page_url", "device_type",
    "browser", "os", "rage_clicks", "error_clicks", "dead_clicks", "frustrated_gestures", "events_count",
}  # fmt: skip
GONG_KEYS = {
    "call_id", "title", "scheduled", "started", "duration_seconds", "participants", "has_transcript",
    "hubspot_context", "url", "raw_call_data", "transcript_data", "participant_details", "talk_time",
    "interaction_stats",
}  # fmt: skip


def meta(mapped):
    return msgspec.json.decode(mapped.metadata_json)


def test_fathom_webhook_example(kit):
    payload = kit.fathom_meeting()
    mapped = map_raw_call(kit.raw_call(payload))
    assert mapped.source == "fathom"
    assert mapped.external_id == "512330871"
    assert mapped.channel_name == "Fathom"
    assert mapped.title == kit.fathom_meeting()["title"]
    assert mapped.sent_at.isoformat() == "2026-02-25T15:01:37+00:00"
    assert mapped.author_name == "Marisol Etxeberria"
    assert mapped.author_email == "marisol.etxeberria@quillmere-systems.com"
    lines = mapped.content.split("\n")
    assert (
        lines[0] == "Marisol Etxeberria: Thanks for making time. Goal today is to agree the scope of a six-week pilot."
    )
    assert lines[2].startswith("Priya V.: I can draft")
    assert len(lines) == 4
    m = meta(mapped)
    assert set(m) >= FATHOM_KEYS
    assert m["session_id"] == 512330871
    assert m["recording_url"] == payload["share_url"]
    assert m["url"] == payload["url"]
    assert m["duration_seconds"] == 52 * 60 + 21
    assert m["has_transcript"] is True
    assert m["rage_clicks"] == 0
    assert m["page_url"] is None
    assert m["raw_session_data"] == payload
    assert next(a["description"] for a in m["action_items"]) == "Send the DPA template to Priya"
    assert len(m["invitees"]) == 5
    assert mapped.link_url == payload["share_url"]
    assert mapped.provider_host == "fathom.video"


def test_fathom_customer_is_the_most_frequent_external_company_domain(kit):
    mapped = map_raw_call(kit.raw_call(kit.fathom_meeting()))
    # gmail.com is free mail; example.com and tallowbrook-capital.com appear once each, tallowbrook first
    assert mapped.customer is not None
    assert mapped.customer.domain == "tallowbrook-capital.com"
    assert mapped.customer.name == "Tallowbrook Capital"
    assert mapped.customer.external_system is None


def test_fathom_customer_name_from_crm_match(kit):
    payload = kit.fathom_meeting(crm_matches={"companies": [{"name": "Tallowbrook Capital LLP", "record_url": None}]})
    mapped = map_raw_call(kit.raw_call(payload))
    assert mapped.customer.name == "Tallowbrook Capital LLP"


def test_fathom_internal_only_meeting_has_no_customer(kit):
    page = kit.example("fathom_meetings_page.json")
    mapped = map_raw_call(kit.raw_call(page["items"][0]))
    assert mapped.customer is None
    assert mapped.content == ""
    assert meta(mapped)["has_transcript"] is False


def test_fathom_free_mail_only_externals_have_no_customer(kit):
    invitees = [
        {"email": "a@gmail.com", "email_domain": "gmail.com", "is_external": True},
        {"email": "b@mailinator.com", "email_domain": "mailinator.com", "is_external": True},
    ]
    mapped = map_raw_call(kit.raw_call(kit.fathom_meeting(calendar_invitees=invitees)))
    assert mapped.customer is None


def test_fathom_participants(kit):
    mapped = map_raw_call(kit.raw_call(kit.fathom_meeting()))
    roles = [(p.role, p.email, p.affiliation) for p in mapped.participants]
    assert roles[0] == ("recorder", "marisol.etxeberria@quillmere-systems.com", "internal")
    # the recorder is not listed twice
    assert [r[1] for r in roles].count("marisol.etxeberria@quillmere-systems.com") == 1
    assert ("invitee", "priya.vandermeer.demo@gmail.com", "external") in roles


def test_gong_example_with_hubspot_account(kit):
    bundle = kit.gong_bundle(0)
    mapped = map_raw_call(kit.raw_call(bundle))
    assert mapped.source == "gong"
    assert mapped.external_id == "5520183947712650031"
    assert mapped.channel_name == "Gong"
    assert mapped.sent_at.isoformat() == "2026-01-14T16:02:11+00:00"
    assert mapped.author_name == "Maren Okafor"
    assert mapped.author_id == "801234567890123456"
    assert mapped.content.split("\n") == [
        "Maren Okafor: Thanks for making time today, Teodor. I'd like to walk through the revised pricing and "
        "then agree on next steps.",
        "Teodor Vance: The forty seats work for us, but we need the rate held for two years. Otherwise finance "
        "will push back.",
        "Maren Okafor: Understood. I'll send a revised order form with a two-year hold by Friday.",
    ]
    m = meta(mapped)
    assert set(m) >= GONG_KEYS
    assert m["call_id"] == "5520183947712650031"
    assert m["duration_seconds"] == 1874
    assert m["url"] == "https://us-48213.app.gong.io/call?id=5520183947712650031"
    assert m["raw_call_data"] == bundle["call"]
    assert m["transcript_data"] == bundle["transcript"]
    hub = m["hubspot_context"]
    assert [a["object_id"] for a in hub["accounts"]] == ["21877340012"]
    assert hub["deals"][0]["name"] == "Harborline Freight - Platform 2026"
    assert hub["deals"][0]["all_fields"]["dealname"] == "Harborline Freight - Platform 2026"
    assert hub["contacts"][0]["email"] == "teodor.vance@harborline-freight.example"
    c = mapped.customer
    assert (c.domain, c.name, c.industry, c.external_system, c.external_id) == (
        "harborline-freight.example",
        "Harborline Freight",
        "LOGISTICS_AND_SUPPLY_CHAIN",
        "hubspot",
        "21877340012",
    )
    attrs = msgspec.json.decode(c.attributes_json)
    assert attrs["fields"]["industry"] == "LOGISTICS_AND_SUPPLY_CHAIN"
    assert attrs["deals"][0]["object_id"] == "40993318275"
    assert mapped.provider_host == "us-48213.app.gong.io"


def test_gong_opportunity_and_field_case_are_treated_alike(kit):
    bundle = kit.gong_bundle(0)
    ctx = bundle["call"]["context"][0]
    ctx["system"] = "HUBSPOT"
    ctx["objects"][0]["fields"] = [{"name": "Name", "value": "Harborline"}, {"name": "DOMAIN", "value": "hl.example"}]
    ctx["objects"][1]["objectType"] = "Opportunity"
    mapped = map_raw_call(kit.raw_call(bundle))
    hub = meta(mapped)["hubspot_context"]
    assert hub["deals"][0]["object_id"] == "40993318275"
    assert (mapped.customer.domain, mapped.customer.name) == ("hl.example", "Harborline")


def test_gong_without_hubspot_uses_external_party_domain(kit):
    bundle = kit.gong_bundle(0)
    bundle["call"]["context"] = [{"system": "Salesforce", "objects": bundle["call"]["context"][0]["objects"]}]
    mapped = map_raw_call(kit.raw_call(bundle))
    hub = meta(mapped)["hubspot_context"]
    assert (hub["accounts"], hub["deals"]) == ([], [])
    assert [c["object_id"] for c in hub["contacts"]] == ["77100234"]  # party-level HubSpot context still counts
    assert mapped.customer.domain == "harborline-freight.example"
    assert mapped.customer.external_system is None
    assert mapped.customer.name == "Harborline Freight"


def test_gong_call_without_transcript_or_customer(kit):
    mapped = map_raw_call(kit.raw_call(kit.gong_bundle(1)))
    assert mapped.content == ""
    assert mapped.customer is None  # the only other party is a phone number
    assert meta(mapped)["has_transcript"] is False
    assert meta(mapped)["transcript_data"] is None


def test_gong_private_call_keeps_its_metadata_but_never_what_was_said(kit):
    bundle = kit.gong_bundle(0)  # has a transcript and HubSpot context
    bundle["call"]["metaData"]["isPrivate"] = True
    mapped = map_raw_call(kit.raw_call(bundle))
    assert mapped.withheld is True
    assert mapped.content == ""  # even though the bundle carried a transcript
    assert mapped.ai_insights_json is None  # withheld, not empty
    m = meta(mapped)
    assert m["talk_time"] is None
    assert m["private"] is True
    assert m["has_transcript"] is False
    assert m["transcript_data"] is None
    assert m["title"]  # the call itself is still described
    assert m["participants"]
    assert mapped.customer is not None
    public = map_raw_call(kit.raw_call(kit.gong_bundle(0)))
    assert public.withheld is False
    assert "private" not in meta(public)
    assert public.content


def test_unchanged_payload_hashes_equal_and_a_change_does_not(kit):
    a = map_raw_call(kit.raw_call(kit.fathom_meeting()))
    b = map_raw_call(kit.raw_call(kit.fathom_meeting(), received_at=kit.later(60)))
    c = map_raw_call(kit.raw_call(kit.fathom_meeting(title="Renamed")))
    assert a.content_hash == b.content_hash
    assert a.content_hash != c.content_hash


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2}',
    ],
)
def test_undecodable_events_are_unmappable(data):
    with pytest.raises(UnmappableError):
        map_raw_call(data)


def test_payload_without_identity_is_unmappable(kit):
    with pytest.raises(UnmappableError, match="not a Fathom meeting"):
        map_raw_call(kit.raw_call({"title": "no id"}, source="fathom", external_id="1"))
    with pytest.raises(UnmappableError, match="not a Gong call bundle"):
        map_raw_call(kit.raw_call({"call": {"metaData": {"title": "x"}}}, source="gong", external_id="1"))


def test_event_and_payload_must_name_the_same_object(kit):
    with pytest.raises(UnmappableError, match="differs"):
        map_raw_call(kit.raw_call(kit.fathom_meeting(), external_id="999"))


def test_nul_characters_never_reach_the_database_text(kit):
    payload = kit.fathom_meeting(title="A\u0000B")
    payload["transcript"][0]["text"] = "zero\u0000byte"
    mapped = map_raw_call(kit.raw_call(payload))
    assert "\x00" not in mapped.content
    assert mapped.title == "AB"
    assert b"\\u0000" not in mapped.metadata_json


def test_domain_rules():
    assert not is_company_domain("gmail.com")
    assert not is_company_domain("mailinator.com")
    assert is_company_domain("harborline-freight.example")
    assert most_frequent_company_domain(["gmail.com", "a.example", "b.example", "b.example", None]) == "b.example"
    assert most_frequent_company_domain(["a.example", "b.example"]) == "a.example"
    assert name_from_domain("acme-tools.co.uk") == "Acme Tools"
    assert name_from_domain("www.quillfern.example") == "Quillfern"
