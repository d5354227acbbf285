"""Listener summaries, so the role can compare wanted and actual listeners."""

from __future__ import annotations


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
    return str(kind)


def listener_summary(listeners, tg_arns=None):
    """Sorted strings port/protocol/policy/certificate/actions, for either the
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
        out.append(f"{port}/{proto}/{policy}/{cert}/{acts}")
    return sorted(out)


class FilterModule:
    def filters(self):
        return {"threetier_listener_summary": listener_summary}
