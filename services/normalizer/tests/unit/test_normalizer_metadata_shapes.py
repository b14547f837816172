"""Issue #22 items 1 and 5: message metadata in the shapes the existing readers expect
(shared/DESIGN.md § Message metadata), ai_insights in one shape for both sources, talk time."""

from __future__ import annotations

import msgspec
import pytest

from callstream.contracts import HostAllowList
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._talk_time import Segment, Speaker, clock_seconds, talk_time

ACCOUNT_KEYS = {"object_id", "domain", "name", "industry", "website", "all_fields"}
DEAL_KEYS = {"object_id", "name", "amount", "stage", "close_date", "probability", "all_fields"}
CONTACT_KEYS = {"object_id", "name", "email", "title", "all_fields"}
INSIGHT_KEYS = {"summary", "key_points", "action_items", "topics", "outcome"}
TALK_KEYS = {"total_seconds", "participants", "internal_share", "external_share", "unknown_share", "longest_monologue"}


def meta(mapped):
    return msgspec.json.decode(mapped.metadata_json)


def insights(mapped):
    return msgspec.json.decode(mapped.ai_insights_json)


# --- Gong CRM context --------------------------------------------------------------------------


def test_gong_hubspot_context_in_the_readers_shape(kit):
    hub = meta(map_raw_call(kit.raw_call(kit.gong_bundle(0))))["hubspot_context"]
    assert set(hub) == {"accounts", "deals", "contacts"}
    [account] = hub["accounts"]
    assert set(account) == ACCOUNT_KEYS
    assert account == {
        "object_id": "21877340012",
        "domain": "harborline-freight.example",
        "name": "Harborline Freight",
        "industry": "LOGISTICS_AND_SUPPLY_CHAIN",
        "website": None,
        "all_fields": {
            "name": "Harborline Freight",
            "domain": "harborline-freight.example",
            "industry": "LOGISTICS_AND_SUPPLY_CHAIN",
        },
    }
    [deal] = hub["deals"]
    assert set(deal) == DEAL_KEYS
    assert (deal["object_id"], deal["name"], deal["amount"], deal["stage"], deal["close_date"]) == (
        "40993318275",
        "Harborline Freight - Platform 2026",
        48500,
        "contractsent",
        "2026-02-27",
    )
    assert deal["probability"] is None
    [contact] = hub["contacts"]
    assert set(contact) == CONTACT_KEYS
    assert contact == {
        "object_id": "77100234",
        "name": "Teodor Vance",  # from the party the CRM contact hangs off
        "email": "teodor.vance@harborline-freight.example",
        "title": "Director of Operations",
        "all_fields": {"jobtitle": "Director of Operations"},
    }


def _salesforce_style(kit):
    bundle = kit.gong_bundle(0)
    bundle["call"]["context"] = [
        {
            "system": "HubSpot",
            "objects": [
                {
                    "objectType": "Account",
                    "objectId": "A1",
                    "timing": "Now",
                    "fields": [
                        {"name": "Name", "value": "Harborline Freight Inc."},
                        {"name": "Domain", "value": "https://www.Harborline-Freight.example/"},
                        {"name": "Industry", "value": "Logistics"},
                        {"name": "Website", "value": "https://harborline-freight.example"},
                        {"name": "MRR__c", "value": "4,200.50"},
                        {"name": "ARR", "value": 50406},
                        {"name": "Custom_Tier__c", "value": ["gold", "eu"]},
                    ],
                },
                {
                    "objectType": "Opportunity",
                    "objectId": "O1",
                    "timing": "Now",
                    "fields": [
                        {"name": "Name", "value": "Harborline renewal"},
                        {"name": "Amount", "value": "48,500.00"},
                        {"name": "StageName", "value": "Negotiation/Review"},
                        {"name": "CloseDate", "value": "2026-03-31"},
                        {"name": "Probability", "value": "75"},
                        {"name": "LeadSource", "value": "Partner"},
                    ],
                },
                {
                    "objectType": "Contact",
                    "objectId": "C1",
                    "timing": "Now",
                    "fields": [
                        {"name": "FirstName", "value": "Ines"},
                        {"name": "LastName", "value": "Halloway"},
                        {"name": "Email", "value": "ines.halloway@harborline-freight.example"},
                        {"name": "Title", "value": "CFO"},
                    ],
                },
            ],
        }
    ]
    return bundle


def test_gong_capitalised_salesforce_style_field_names_are_mapped_and_kept(kit):
    mapped = map_raw_call(kit.raw_call(_salesforce_style(kit)))
    hub = meta(mapped)["hubspot_context"]
    [account] = hub["accounts"]
    assert (account["domain"], account["name"], account["industry"], account["website"]) == (
        "harborline-freight.example",
        "Harborline Freight Inc.",
        "Logistics",
        "https://harborline-freight.example",
    )
    # every field by its own name, values as sent (MRR, ARR and custom fields live here)
    assert account["all_fields"]["MRR__c"] == "4,200.50"
    assert account["all_fields"]["ARR"] == 50406
    assert account["all_fields"]["Custom_Tier__c"] == ["gold", "eu"]
    [deal] = hub["deals"]
    assert (deal["name"], deal["amount"], deal["stage"], deal["close_date"], deal["probability"]) == (
        "Harborline renewal",
        48500,
        "Negotiation/Review",
        "2026-03-31",
        75,
    )
    assert isinstance(deal["amount"], int)
    assert isinstance(deal["probability"], int)
    assert deal["all_fields"]["LeadSource"] == "Partner"
    assert deal["all_fields"]["StageName"] == "Negotiation/Review"
    contacts = {c["object_id"]: c for c in hub["contacts"]}
    assert (contacts["C1"]["name"], contacts["C1"]["email"], contacts["C1"]["title"]) == (
        "Ines Halloway",
        "ines.halloway@harborline-freight.example",
        "CFO",
    )
    # the customer is still chosen from the HubSpot account
    c = mapped.customer
    assert (c.domain, c.name, c.external_system, c.external_id) == (
        "harborline-freight.example",
        "Harborline Freight Inc.",
        "hubspot",
        "A1",
    )


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("https://harborline-freight.example/about", "https://harborline-freight.example/about"),
        ("http://harborline-freight.example", "http://harborline-freight.example"),
        ("www.harborline-freight.example", "www.harborline-freight.example"),
        ("javascript:alert(document.cookie)", None),
        ("javascript://harborline-freight.example/%0Aalert(1)", None),
        ("JavaScript://x.example/%0aalert(1)", None),
        ("data:text/html;base64,PHNjcmlwdD4=", None),
        ('https://harborline-freight.example/" onmouseover="alert(1)', None),
    ],
)
def test_gong_account_website_a_ui_renders_is_a_web_address_or_null(kit, sent, kept):
    """CRM fields are free text anyone with CRM access sets; readers render ``website`` as a link,
    so only an http(s) address (or a bare host) is handed out, on the account and the customer.
    The value as sent stays in ``all_fields``."""
    bundle = _salesforce_style(kit)
    fields = bundle["call"]["context"][0]["objects"][0]["fields"]
    next(f for f in fields if f["name"] == "Website")["value"] = sent
    mapped = map_raw_call(kit.raw_call(bundle))
    [account] = meta(mapped)["hubspot_context"]["accounts"]
    assert account["website"] == kept
    assert mapped.customer.website == kept
    assert account["all_fields"]["Website"] == sent


@pytest.mark.parametrize(
    ("value", "expected"),
    [(48500, 48500), (0.35, 0.35), ("48,500.00", 48500), ("12.5%", 12.5), ("n/a", None), (True, None), (None, None)],
)
def test_gong_deal_amount_and_probability_are_numbers_or_null(kit, value, expected):
    bundle = kit.gong_bundle(0)
    deal = bundle["call"]["context"][0]["objects"][1]
    deal["fields"] = [{"name": "amount", "value": value}, {"name": "hs_deal_stage_probability", "value": value}]
    [mapped] = meta(map_raw_call(kit.raw_call(bundle)))["hubspot_context"]["deals"]
    assert mapped["amount"] == expected
    assert mapped["probability"] == expected


def test_gong_call_without_crm_context_has_empty_lists(kit):
    for bundle in (kit.gong_bundle(1), kit.gong_bundle(0)):
        bundle["call"]["context"] = []
        for party in bundle["call"]["parties"]:
            party.pop("context", None)
        hub = meta(map_raw_call(kit.raw_call(bundle)))["hubspot_context"]
        assert hub == {"accounts": [], "deals": [], "contacts": []}
    bundle = kit.gong_bundle(0)
    del bundle["call"]["context"]  # context not requested at all
    assert meta(map_raw_call(kit.raw_call(bundle)))["hubspot_context"]["accounts"] == []


def test_gong_both_timings_give_one_record_and_now_wins(kit):
    bundle = kit.gong_bundle(0)
    objects = bundle["call"]["context"][0]["objects"]
    old = {**objects[0], "timing": "TimeOfCall", "fields": [{"name": "name", "value": "Old Name"}]}
    objects.insert(0, old)
    [account] = meta(map_raw_call(kit.raw_call(bundle)))["hubspot_context"]["accounts"]
    assert account["name"] == "Harborline Freight"


# --- Gong participants, URL, insights, interaction stats ---------------------------------------------


def test_gong_participants_are_names_and_details_are_kept(kit):
    m = meta(map_raw_call(kit.raw_call(kit.gong_bundle(0))))
    assert m["participants"] == ["Maren Okafor", "Teodor Vance", "Ines Halloway"]
    assert all(isinstance(p, str) for p in m["participants"])
    assert [d["email"] for d in m["participant_details"]] == [
        "maren.okafor@quillfern.example",
        "teodor.vance@harborline-freight.example",
        "ines.halloway@harborline-freight.example",
    ]
    assert m["participant_details"][0]["affiliation"] == "Internal"
    assert m["participant_details"][1]["title"] == "Director of Operations"
    # a party with only a phone number has no name to list, but its details are kept
    m1 = meta(map_raw_call(kit.raw_call(kit.gong_bundle(1))))
    assert m1["participants"] == ["Jonah Preece"]
    assert m1["participant_details"][1]["phone_number"] == "+1 555-0147"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)//app.gong.io",
        "https://evil.example/call?id=1",
        "http://us-48213.app.gong.io/call?id=1",
        "https://app.gong.io@evil.example/",
        'https://us-1.app.gong.io/call?id=1"><script>',
    ],
)
def test_gong_url_a_ui_renders_passes_the_allow_list_or_is_null(kit, url):
    bundle = kit.gong_bundle(0)
    bundle["call"]["metaData"]["url"] = url
    mapped = map_raw_call(kit.raw_call(bundle))
    m = meta(mapped)
    assert m["url"] is None
    assert m["raw_call_data"]["metaData"]["url"] == url  # the raw value only inside the raw keys
    assert mapped.link_url is None
    assert mapped.link_reason is not None
    assert m["link_refused"] == mapped.link_reason  # the linker answers the same reason


def test_gong_url_follows_the_configured_allow_list(kit):
    bundle = kit.gong_bundle(0)
    assert meta(map_raw_call(kit.raw_call(bundle)))["url"] == bundle["call"]["metaData"]["url"]
    only_fathom = HostAllowList(["fathom.video"])
    assert meta(map_raw_call(kit.raw_call(bundle), only_fathom))["url"] is None
    assert "link_refused" not in meta(map_raw_call(kit.raw_call(bundle)))  # only when one was refused


def test_gong_ai_insights_in_the_shared_shape(kit):
    bundle = kit.gong_bundle(0)
    bundle["call"]["content"]["pointsOfInterest"] = {
        "actionItems": [
            {
                "snippetStartTime": 1701.9,
                "snippetEndTime": 1706.8,
                "speakerID": "6617700012345000101",
                "snippet": "I'll send a revised order form with a two-year hold by Friday.",
            },
            {"snippet": "Someone follows up", "speakerID": "nobody"},
        ]
    }
    ai = insights(map_raw_call(kit.raw_call(bundle)))
    assert set(ai) == INSIGHT_KEYS
    assert ai["summary"].startswith("Harborline confirmed the 40-seat scope")
    assert ai["key_points"] == [
        "Scope fixed at 40 seats across two depots.",
        "Legal review expected to take about two weeks.",
    ]
    assert ai["action_items"] == [
        {
            "text": "I'll send a revised order form with a two-year hold by Friday.",
            "assignee": "Maren Okafor",
            "t": 1701.9,
        },
        {"text": "Someone follows up", "assignee": None, "t": None},
    ]
    assert ai["topics"] == ["Pricing", "Next Steps"]
    assert ai["outcome"] == "Next steps agreed"
    bare = insights(map_raw_call(kit.raw_call(kit.gong_bundle(1))))
    assert bare == {"summary": None, "key_points": [], "action_items": [], "topics": [], "outcome": None}


def test_gong_interaction_stats_kept(kit):
    m = meta(map_raw_call(kit.raw_call(kit.gong_bundle(0))))
    assert m["interaction_stats"] == {"Talk Ratio": 0.51, "Interactivity": 6.2}
    assert meta(map_raw_call(kit.raw_call(kit.gong_bundle(1))))["interaction_stats"] is None


def test_gong_talk_time_from_transcript_timings(kit):
    t = meta(map_raw_call(kit.raw_call(kit.gong_bundle(0))))["talk_time"]
    assert set(t) == TALK_KEYS
    # Maren: (7350-4210) + (11980-7420) + (1706800-1701900) ms; Teodor: (618940-612300) + (622450-619100)
    maren, teodor = 3.14 + 4.56 + 4.9, 6.64 + 3.35
    assert t["total_seconds"] == round(maren + teodor, 1)
    assert [(p["name"], p["affiliation"], p["seconds"]) for p in t["participants"]] == [
        ("Maren Okafor", "internal", round(maren, 1)),
        ("Teodor Vance", "external", round(teodor, 1)),
    ]
    assert t["participants"][0]["share"] == round(maren / (maren + teodor), 4)
    assert t["internal_share"] == round(maren / (maren + teodor), 4)
    assert t["external_share"] == round(teodor / (maren + teodor), 4)
    assert t["unknown_share"] == 0
    # Teodor's two sentences are one monologue: 612.3 s to 622.45 s
    assert t["longest_monologue"] == {
        "name": "Teodor Vance",
        "email": "teodor.vance@harborline-freight.example",
        "affiliation": "external",
        "seconds": 10.2,
        "start": 612.3,
    }
    assert meta(map_raw_call(kit.raw_call(kit.gong_bundle(1))))["talk_time"] is None  # no transcript yet


# --- Fathom ------------------------------------------------------------------------------------------


def test_fathom_keys_and_recorder(kit):
    payload = kit.fathom_meeting()
    m = meta(map_raw_call(kit.raw_call(payload)))
    assert (m["user_name"], m["user_email"]) == ("Marisol Etxeberria", "marisol.etxeberria@quillmere-systems.com")
    assert m["session_id"] == 512330871
    assert m["recording_url"] == payload["share_url"]
    assert m["url"] == payload["url"]
    for key in ("page_url", "device_type", "browser", "os"):
        assert m[key] is None
    for key in ("rage_clicks", "error_clicks", "dead_clicks", "frustrated_gestures", "events_count"):
        assert m[key] == 0
    assert m["summary"].startswith("## Meeting Purpose")
    assert next(i["email"] for i in m["invitees"]) == "marisol.etxeberria@quillmere-systems.com"


@pytest.mark.parametrize(
    "bad",
    ["javascript:alert(document.cookie)", "https://fathom.video.evil.example/share/x", "http://fathom.video/share/x"],
)
def test_fathom_urls_a_ui_renders_pass_the_allow_list_or_are_null(kit, bad):
    payload = kit.fathom_meeting(share_url=bad)
    payload["action_items"][0]["recording_playback_url"] = bad
    mapped = map_raw_call(kit.raw_call(payload))
    m = meta(mapped)
    # the share link decides (the linker's rule): refused, neither it nor the call URL is offered
    assert (m["recording_url"], m["url"]) == (None, None)
    assert m["action_items"][0]["recording_playback_url"] is None
    assert m["raw_session_data"]["share_url"] == bad
    assert mapped.link_url is None
    assert mapped.link_reason is not None
    assert m["link_refused"] == mapped.link_reason  # the linker answers the same reason
    only_url_bad = meta(map_raw_call(kit.raw_call(kit.fathom_meeting(url=bad))))
    assert only_url_bad["url"] is None
    assert only_url_bad["recording_url"] == kit.fathom_meeting()["share_url"]


def test_fathom_crm_record_urls_are_vetted(kit):
    payload = kit.fathom_meeting(
        crm_matches={
            "companies": [{"name": "Tallowbrook", "record_url": "https://app.hubspot.com/contacts/1/company/2"}],
            "contacts": [{"name": "K", "email": "k@t.example", "record_url": "javascript:alert(1)"}],
        }
    )
    m = meta(map_raw_call(kit.raw_call(payload)))
    assert m["crm_matches"]["companies"] == [{"name": "Tallowbrook", "record_url": None}]
    assert m["crm_matches"]["contacts"][0]["record_url"] is None
    hubspot = HostAllowList(["fathom.video", "app.hubspot.com"])
    m = meta(map_raw_call(kit.raw_call(payload), hubspot))
    assert m["crm_matches"]["companies"][0]["record_url"] == "https://app.hubspot.com/contacts/1/company/2"


def test_fathom_ai_insights_in_the_shared_shape(kit):
    ai = insights(map_raw_call(kit.raw_call(kit.fathom_meeting())))
    assert set(ai) == INSIGHT_KEYS
    assert ai["summary"].startswith("## Meeting Purpose")
    assert ai["key_points"] == ["EU data residency is a hard requirement.", "SSO needed for pilot users."]
    assert ai["action_items"] == [
        {"text": "Send the DPA template to Priya", "assignee": "Devon Achterberg", "t": 478.0},
        {"text": "Confirm EU region availability for the pilot tenant", "assignee": None, "t": 25.0},
    ]
    assert (ai["topics"], ai["outcome"]) == ([], None)
    empty = kit.fathom_meeting(default_summary=None, action_items=None)
    assert insights(map_raw_call(kit.raw_call(empty))) == {
        "summary": None,
        "key_points": [],
        "action_items": [],
        "topics": [],
        "outcome": None,
    }


def test_fathom_talk_time_from_item_starts(kit):
    payload = kit.fathom_meeting()
    t = meta(map_raw_call(kit.raw_call(payload)))["talk_time"]
    assert set(t) == TALK_KEYS
    # items start at 4 s, 19 s, 472 s and 751 s of a 3141 s recording; each lasts until the next
    # starts but no longer than its words at 1.5 a second: here every item is bounded by its words
    words = [len(item["text"].split()) for item in payload["transcript"]]
    assert words == [15, 16, 12, 13]
    spoken = [w / 1.5 for w in words]
    by_name = {p["name"]: p for p in t["participants"]}
    assert by_name["Marisol Etxeberria"]["seconds"] == round(spoken[0], 1)
    assert by_name["Marisol Etxeberria"]["affiliation"] == "internal"  # the recorder
    assert by_name["Kwabena Ashworth-Lindqvist"]["seconds"] == round(spoken[1], 1)
    assert by_name["Kwabena Ashworth-Lindqvist"]["affiliation"] == "external"
    assert by_name["Priya Vandermeer"]["affiliation"] == "external"  # "Priya V.", matched by the invitee address
    assert by_name["Speaker 4"]["affiliation"] == "unknown"
    assert by_name["Speaker 4"]["seconds"] == round(spoken[3], 1)  # not the rest of the call
    total = sum(spoken)
    assert t["total_seconds"] == round(total, 1)
    assert t["internal_share"] == round(spoken[0] / total, 4)
    assert t["external_share"] == round((spoken[1] + spoken[2]) / total, 4)
    assert t["unknown_share"] == round(spoken[3] / total, 4)
    assert t["longest_monologue"]["name"] == "Kwabena Ashworth-Lindqvist"
    assert meta(map_raw_call(kit.raw_call(kit.fathom_meeting(transcript=None))))["talk_time"] is None


def test_fathom_item_lasts_until_the_next_when_that_comes_first(kit):
    payload = kit.fathom_meeting()
    for item, at in zip(payload["transcript"], ("00:00:00", "00:00:02", "00:00:03", "00:00:05"), strict=True):
        item["timestamp"] = at
    t = meta(map_raw_call(kit.raw_call(payload)))["talk_time"]
    seconds = {p["name"]: p["seconds"] for p in t["participants"]}
    assert (seconds["Marisol Etxeberria"], seconds["Kwabena Ashworth-Lindqvist"], seconds["Priya Vandermeer"]) == (
        2,
        1,
        2,
    )


# --- talk time, directly ------------------------------------------------------------------------------


def test_talk_time_merges_a_speakers_consecutive_segments_into_one_monologue():
    speakers = {"a": Speaker("A", "a@x.example", "internal"), "b": Speaker("B", None, "external")}
    segments = [Segment("a", 0, 10), Segment("a", 12, 20), Segment("b", 20, 35), Segment("a", 35, 36)]
    t = talk_time(segments, speakers)
    assert t["longest_monologue"]["name"] == "A"
    assert t["longest_monologue"]["seconds"] == 20
    assert t["participants"][0]["name"] == "A"
    assert t["participants"][0]["seconds"] == 19
    assert (t["internal_share"], t["external_share"]) == (round(19 / 34, 4), round(15 / 34, 4))
    assert talk_time([], speakers) is None
    assert talk_time([Segment("a", 5, 5)], speakers) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:07:58", 478), ("07:58", 478), ("1:00:00", 3600), ("12.5", 12.5), ("x", None), ("", None), (None, None)],
)
def test_clock_seconds(text, seconds):
    assert clock_seconds(text) == seconds
