"""Listener summaries, so the role can compare wanted and actual listeners."""

from __future__ import annotations

import hashlib


def _action(a, tg_arns):
    kind = a.get("type") or a.get("Type")
    if kind == "forward":
        arn = a.get("target_group_arn") or a.get("TargetGroupArn")
        if not arn and (a.get("TargetGroupName") or a.get("target_group_name")):
            arn = tg_arns.get(a.get("TargetGroupName") or a.get("target_group_name"))
        return f"forward:{arn}"
    if kind == "redirect":
        r = a.get("redirect_config") or a.get("RedirectConfig") or {}
        proto = r.get("protocol") or r.get("Protocol")
        port = r.get("port") or r.get("Port")
        code = r.get("status_code") or r.get("StatusCode")
        return f"redirect:{proto}:{port}:{code}"
    if kind == "fixed-response":
        r = a.get("fixed_response_config") or a.get("FixedResponseConfig") or {}
        code = r.get("status_code") or r.get("StatusCode")
        ctype = r.get("content_type") or r.get("ContentType")
        body = r.get("message_body") or r.get("MessageBody") or ""
        return f"fixed:{code}:{ctype}:{body}"
    return str(kind)


def _condition(c):
    field = c.get("field") or c.get("Field")
    if field == "http-header":
        h = c.get("http_header_config") or c.get("HttpHeaderConfig") or {}
        name = (h.get("http_header_name") or h.get("HttpHeaderName") or "").lower()
        values = h.get("values") or h.get("Values") or []
        # described rules carry digests (roles/aws_state redacts the secret)
        digests = [
            v if v.startswith("sha256:") else "sha256:" + hashlib.sha256(v.encode()).hexdigest()
            for v in values
        ]
        return f"header:{name}=" + "|".join(sorted(digests))
    return str(field)


def _rule(r, tg_arns):
    priority = r.get("priority") or r.get("Priority")
    conditions = ",".join(
        sorted(_condition(c) for c in r.get("conditions") or r.get("Conditions") or [])
    )
    actions = ";".join(_action(a, tg_arns) for a in r.get("actions") or r.get("Actions") or [])
    return f"{priority}[{conditions}]{actions}"


def listener_summary(listeners, tg_arns=None):
    """Sorted strings port/protocol/policy/certificate/actions/rules, for either the
    module's listener form (CamelCase) or the described form (snake_case)."""
    tg_arns = tg_arns or {}
    out = []
    for lst in listeners or []:
        port = lst.get("port") or lst.get("Port")
        proto = lst.get("protocol") or lst.get("Protocol")
        # (moto reports a policy on plain HTTP listeners too: only HTTPS has one)
        policy = (lst.get("ssl_policy") or lst.get("SslPolicy") or "") if proto == "HTTPS" else ""
        certs = lst.get("certificates") or lst.get("Certificates") or []
        cert = ",".join(
            sorted((c.get("certificate_arn") or c.get("CertificateArn") or "") for c in certs)
        )
        actions = lst.get("default_actions") or lst.get("DefaultActions") or []
        acts = ";".join(_action(a, tg_arns) for a in actions)
        rules = " ".join(_rule(r, tg_arns) for r in lst.get("rules") or lst.get("Rules") or [])
        out.append(f"{port}/{proto}/{policy}/{cert}/{acts}/{rules}")
    return sorted(out)


class FilterModule:
    def filters(self):
        return {"threetier_listener_summary": listener_summary}
