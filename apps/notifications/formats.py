"""The bodies a webhook receives: Slack-compatible, Teams-compatible (Adaptive Card) and plain JSON, and the
text of an e-mail. One event makes the same words in each."""

from typing import Any

from django.conf import settings

from apps.notifications.events import event_words
from apps.notifications.models import Channel, Event

SLACK_MAX_FIELDS = 10  # Slack refuses a section with more fields


def absolute_url(url: str) -> str:
    """A link as receivers need it: a path ("/experiments/3/") gets SITE_URL in front."""
    if url.startswith("/"):
        return settings.SITE_URL + url
    return url


def fact_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "–"
    if isinstance(value, list | tuple):
        return "; ".join(fact_text(item) for item in value) or "–"
    if isinstance(value, dict):
        return ", ".join(f"{name}: {fact_text(item)}" for name, item in value.items()) or "–"
    return str(value)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: Event) -> dict:
    """`text` (the notification and fallback) and blocks: header, text, facts as fields, a link button."""
    url = absolute_url(event.url)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": event.title[:150], "emoji": False}},
    ]
    if event.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(event.text)[:3000]}})
    facts = list((event.facts or {}).items())[:SLACK_MAX_FIELDS]
    if facts:
        fields = [
            {"type": "mrkdwn", "text": f"*{_slack_escape(str(name))}*\n{_slack_escape(fact_text(value))}"[:2000]}
            for name, value in facts
        ]
        blocks.append({"type": "section", "fields": fields})
    context = f"{event_words(event.event)} · {event.team.name} · llmbench"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]})
    if url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in llmbench"}, "url": url}
                ],
            }
        )
    text = f"{event.title}: {event.text}" if event.text else event.title
    if url:
        text += f" <{url}|Open>"
    return {"text": text, "blocks": blocks}


def teams_body(event: Event) -> dict:
    """A message with one Adaptive Card (what Teams' Workflows webhooks take; the old connectors too)."""
    url = absolute_url(event.url)
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": event.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": f"{event_words(event.event)} · {event.team.name}", "isSubtle": True},
        ],
    }
    if event.text:
        card["body"].append({"type": "TextBlock", "text": event.text, "wrap": True})
    if event.facts:
        card["body"].append(
            {
                "type": "FactSet",
                "facts": [{"title": str(name), "value": fact_text(value)} for name, value in event.facts.items()],
            }
        )
    if url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in llmbench", "url": url}]
    return {
        "type": "message",
        "summary": event.title,
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def generic_body(event: Event, delivery_key: str) -> dict:
    """Everything, plainly: for receivers of your own."""
    return {
        "event": event.event,
        "event_label": event_words(event.event),
        "title": event.title,
        "text": event.text,
        "url": absolute_url(event.url),
        "facts": event.facts or {},
        "team": {"id": event.team_id, "slug": event.team.slug, "name": event.team.name},
        "event_id": event.pk,
        "delivery": delivery_key,
        "created_at": event.created_at.isoformat(),
    }


def webhook_body(fmt: str, event: Event, delivery_key: str) -> dict:
    if fmt == Channel.Format.SLACK:
        return slack_body(event)
    if fmt == Channel.Format.TEAMS:
        return teams_body(event)
    return generic_body(event, delivery_key)


def email_subject(event: Event) -> str:
    title = " ".join(event.title.split())  # a header holds one line (Django refuses newlines in it)
    return f"[llmbench · {event.team.name}] {title}"[:200]


def email_text(event: Event) -> str:
    lines = [event.title, ""]
    if event.text:
        lines += [event.text, ""]
    for name, value in (event.facts or {}).items():
        lines.append(f"{name}: {fact_text(value)}")
    if event.facts:
        lines.append("")
    url = absolute_url(event.url)
    if url:
        lines += [url, ""]
    lines.append(
        f"{event_words(event.event)} in the team {event.team.name}. "
        f"Choose what you receive at {settings.SITE_URL}/notifications/"
    )
    return "\n".join(lines)
