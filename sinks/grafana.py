"""Grafana annotations, through grafana-client (``POST /api/annotations``).

Each notification marks the incident's time range on the dashboard (``dashboard_uid``, all
dashboards when unset): ``time`` the first event, ``timeEnd`` the last, tags ``ramparts``,
the detector, the severity, the event and ``<type>:<id>`` of the entity, and the summary as
text. The output's ``secret`` is the service-account token. Grafana does not deduplicate
annotations; the text names the notification id and says "(resent)" on a redelivery.
"""

from __future__ import annotations

from .outputs import Outcome, Output, _ms, scrub, url_secrets


def build_payload(note: dict, attempt: int, dashboard_uid: str | None) -> dict:
    """The keyword arguments of ``GrafanaApi.annotations.add_annotation``."""
    a = note["alert"]
    w = a.get("window") or {}
    ent = a["entity"]
    text = f"[{a['severity']}] {a['summary']} ({note['event']}, {a['event_count']} events; notification {note['id']})"
    if attempt > 1:
        text += " (resent)"
    return {"dashboard_uid": dashboard_uid, "time_from": _ms(w.get("start", a.get("first_event_ts", a["ts"]))),
            "time_to": _ms(w.get("end", a["ts"])),
            "tags": ["ramparts", a["detector"], a["severity"], note["event"], f"{ent['type']}:{ent['id']}"],
            "text": text}


class GrafanaOutput(Output):
    type = "grafana"

    def send(self, note: dict, attempt: int, now: float) -> Outcome:
        from grafana_client import GrafanaApi
        from grafana_client.client import GrafanaException

        api = GrafanaApi.from_url(self.url, credential=self.secrets[0] if self.secrets else None,
                                  timeout=self.timeout_seconds)
        try:
            api.annotations.add_annotation(**build_payload(note, attempt, self.dashboard_uid))
        except GrafanaException as e:
            status = e.status_code or None
            permanent = status is not None and 400 <= status < 500 and status not in (408, 425, 429)
            return Outcome(False, status, None, scrub(f"{self.name}: {e.message}", [*url_secrets(self.url), *self.secrets]),
                           permanent)
        except Exception as e:  # the HTTP library's own errors (connection refused ...)
            return Outcome(False, None, None, scrub(f"{self.name}: {type(e).__name__}: {e}", [*url_secrets(self.url), *self.secrets]))
        finally:
            try:
                api.client.s.close()
            except Exception:
                pass
        return Outcome(True, 200)
