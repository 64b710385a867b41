"""Webhook bodies: an alert event in a receiver's format.

An Alertmanager v4 webhook (so anything that takes Alertmanager's webhooks takes
finsentry's), the plain alert event, or a Slack-style message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from processors.envelope.message import AlertEvent, to_json

if TYPE_CHECKING:
    from flows.config import ReceiverConfig


def render(alert: AlertEvent, receiver: ReceiverConfig, external_url: str = "") -> bytes:
    """The POST body for one alert event in the receiver's format."""
    if receiver.format == "json":
        return to_json(alert)
    if receiver.format == "slack":
        return msgspec.json.encode(_slack(alert))
    # Grouped by the key, as Alertmanager's default route would: a topic or an entity.
    group = {k: alert.labels[k] for k in ("alertname", "topic", "entity") if k in alert.labels}
    return msgspec.json.encode(
        {
            "receiver": receiver.name,
            "status": alert.status,
            "alerts": [alert],
            "groupLabels": group,
            "commonLabels": alert.labels,
            "commonAnnotations": alert.annotations,
            "externalURL": external_url,
            "version": "4",
            "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
            "truncatedAlerts": 0,
        }
    )


def _slack(alert: AlertEvent) -> dict[str, Any]:
    window = alert.window
    firing = alert.status == "firing"
    headline = (
        f"{':rotating_light:' if firing else ':white_check_mark:'} "
        f"[{alert.status.upper()}:{alert.labels.get('severity', '')}] "
        f"{_mrkdwn(alert.annotations.get('summary', alert.labels.get('alertname', '')))}"
    )
    description = _mrkdwn(alert.annotations.get("description", ""))
    facts = (
        f"negative share {window.negative_share:.0%} of {window.n} "
        f"(baseline {alert.baseline_negative_share:.0%}, {alert.score_name} = {alert.score:.1f}) · "
        f"window {window.start:%Y-%m-%d %H:%M} to {window.end:%H:%M} UTC"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{description}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]},
    ]
    if firing and window.evidence:
        quotes = "\n".join(f"> {_mrkdwn(e.text)}" for e in window.evidence[:3])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": quotes}})
    return {"text": f"{headline}\n{description}", "blocks": blocks}


def _mrkdwn(text: str) -> str:
    """Slack's escaping: only these three characters are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
