#!/usr/bin/python
# ruff: noqa: E402, C408  (Ansible module layout)
# Copyright: threetier contributors
"""An ACM certificate requested with DNS validation, found again by its tags."""

from __future__ import annotations

DOCUMENTATION = r"""
module: threetier_acm_certificate
short_description: An ACM certificate validated by DNS, found again by its Name tagg
description:
  - community.aws.acm_certificate only imports certificates; none of the
    collections requests one from ACM. This module does, with DNS
    validation, and finds it again on the next run by its Name tag and its
    domain names (ListCertificates, ListTagsForCertificate), so a second run
    requests nothing.
  - It returns the CNAME records ACM asks for (waiting up to a minute for
    ACM to name them after a request); the caller writes them into the
    hosted zone, then calls again with wait=true until the certificate is
    ISSUED (bounded by wait_timeout; a clear failure after it).
  - Names changed: a new certificate is requested (ACM cannot change one's
    names); the one it replaces is deleted once no load balancer uses it
    (returned in superseded until then).
  - state=absent deletes every certificate with the Name tag (AWS refuses
    one a load balancer still uses: remove the listener first) and returns
    their validation records, so the caller can remove them too.
  - Check mode is supported.
options:
  domain_name: {description: The certificate's subject (first) name., type: str}
  subject_alternative_names:
    description: Further names it covers (the domain name need not be repeated).
    type: list
    elements: str
    default: []
  tags:
    description: Tags of a new certificate; its Name tag (required) is how it is found again.
    type: dict
    required: true
  wait:
    description: Wait until the certificate is ISSUED (after its records are written).
    type: bool
    default: false
  wait_timeout: {description: Seconds to wait with wait=true., type: int, default: 900}
  state:
    description: present or absent.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Request the site's certificate
  threetier_acm_certificate:
    domain_name: www.example.com
    tags: {Name: threetier-production-site, Environment: production}
  register: cert

- name: Wait until ACM has validated it (its records written in between)
  threetier_acm_certificate:
    domain_name: www.example.com
    tags: {Name: threetier-production-site, Environment: production}
    wait: true
    wait_timeout: 900
"""

RETURN = r"""
arn: {description: The certificate's ARN (empty when absent)., returned: always, type: str}
status: {description: ACM's status (PENDING_VALIDATION, ISSUED, ...)., returned: always, type: str}
validation_records:
  description: The CNAME records ACM validates with, each C({name, type, value}), each once.
  returned: always
  type: list
  elements: dict
superseded:
  description: Certificates of this Name tag for other names, kept while a load balancer uses them.
  returned: when state=present
  type: list
  elements: str
deleted:
  description: The certificates deleted (absent, or superseded), each C({arn, validation_records}).
  returned: always
  type: list
  elements: dict
"""

import contextlib
import time

with contextlib.suppress(ImportError):  # reported by AnsibleAWSModule
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

LIVE = ["PENDING_VALIDATION", "ISSUED", "INACTIVE"]
FAILED = ("FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED")


def call(module, what, fn, **kwargs):
    try:
        return fn(**kwargs)
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"cannot {what}")
    return None


def names_of(cert):
    """The set of names a described (or listed) certificate covers."""
    return {cert.get("DomainName", "")} | set(cert.get("SubjectAlternativeNames") or [])


def ours(module, client, name_tag):
    """Every live certificate tagged Name=name_tag, described."""
    found = []
    paginator = client.get_paginator("list_certificates")
    try:
        for page in paginator.paginate(CertificateStatuses=LIVE):
            for summary in page["CertificateSummaryList"]:
                arn = summary["CertificateArn"]
                tags = client.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                if {"Key": "Name", "Value": name_tag} in tags:
                    found.append(client.describe_certificate(CertificateArn=arn)["Certificate"])
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"cannot list the ACM certificates tagged Name={name_tag}")
    return found


def created(cert):
    when = cert.get("CreatedAt")
    return when.timestamp() if hasattr(when, "timestamp") else 0.0


def records_of(cert):
    out = []
    for option in cert.get("DomainValidationOptions") or []:
        rr = option.get("ResourceRecord")
        if rr:
            record = {"name": rr["Name"], "type": rr["Type"], "value": rr["Value"]}
            if record not in out:
                out.append(record)
    return out


def described(module, client, arn):
    return call(module, f"describe {arn}", client.describe_certificate, CertificateArn=arn)[
        "Certificate"
    ]


def with_records(module, client, cert, seconds=60):
    """The certificate once ACM has named a record for each of its names
    (a few seconds after a request)."""
    deadline = time.monotonic() + seconds
    while cert.get("Status") == "PENDING_VALIDATION":
        options = cert.get("DomainValidationOptions") or []
        if options and all(o.get("ResourceRecord") for o in options):
            break
        if time.monotonic() > deadline:
            module.fail_json(
                msg=f"ACM named no validation records for {cert['CertificateArn']} "
                f"within {seconds} s"
            )
        time.sleep(2)
        cert = described(module, client, cert["CertificateArn"])
    return cert


def delete(module, client, cert):
    """Delete one certificate; AWS refuses one in use (said clearly)."""
    arn = cert["CertificateArn"]
    if cert.get("InUseBy"):
        module.fail_json(
            msg=f"certificate {arn} ({cert.get('DomainName')}) is still used by "
            f"{', '.join(cert['InUseBy'])}: remove its HTTPS listener first"
        )
    if not module.check_mode:
        call(module, f"delete {arn}", client.delete_certificate, CertificateArn=arn)
    return {"arn": arn, "validation_records": records_of(cert)}


def wait_issued(module, client, cert, timeout):
    deadline = time.monotonic() + timeout
    while cert["Status"] != "ISSUED":
        if cert["Status"] in FAILED:
            reasons = cert.get("FailureReason") or "no reason given"
            module.fail_json(
                msg=f"ACM did not issue {cert['CertificateArn']}: {cert['Status']} ({reasons})"
            )
        if time.monotonic() > deadline:
            pending = [
                f"{o['DomainName']} ({o.get('ValidationStatus')})"
                for o in cert.get("DomainValidationOptions") or []
                if o.get("ValidationStatus") != "SUCCESS"
            ]
            module.fail_json(
                msg=f"ACM has not issued {cert['CertificateArn']} within {timeout} s: still "
                f"{cert['Status']} for {', '.join(pending) or 'its names'}. ACM reads the "
                "validation records from public DNS: check that they are in the hosted zone "
                "and that the zone is delegated (its NS records at the parent or the registrar).",
                validation_records=records_of(cert),
            )
        time.sleep(max(1.0, min(10.0, deadline - time.monotonic())))
        cert = described(module, client, cert["CertificateArn"])
    return cert


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            domain_name=dict(type="str"),
            subject_alternative_names=dict(type="list", elements="str", default=[]),
            tags=dict(type="dict", required=True),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=900),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["domain_name"])],
        supports_check_mode=True,
    )
    p = module.params
    name_tag = (p["tags"] or {}).get("Name")
    if not name_tag:
        module.fail_json(
            msg="tags: a Name tag is required (it is how the certificate is found again)"
        )
    client = module.client("acm")
    found = ours(module, client, name_tag)

    if p["state"] == "absent":
        deleted = [delete(module, client, c) for c in found]
        module.exit_json(
            changed=bool(deleted), arn="", status="", validation_records=[], deleted=deleted
        )

    domain = p["domain_name"].lower().rstrip(".")
    sans = [s.lower().rstrip(".") for s in p["subject_alternative_names"]]
    wanted = {domain, *sans}
    same = [c for c in found if c.get("DomainName") == domain and names_of(c) == wanted]
    # the issued one first, then the newest
    same.sort(key=lambda c: (c["Status"] != "ISSUED", -created(c)))
    others = [c for c in found if c not in same[:1]]
    changed = False
    if same:
        cert = same[0]
    elif module.check_mode:
        module.exit_json(
            changed=True,
            arn="",
            status="PENDING_VALIDATION",
            validation_records=[],
            superseded=[c["CertificateArn"] for c in others],
            deleted=[],
        )
    else:
        request = {
            "DomainName": domain,
            "ValidationMethod": "DNS",
            "Tags": [{"Key": k, "Value": str(v)} for k, v in sorted(p["tags"].items())],
        }
        if sans:
            # ACM wants the domain name among the alternative names when any are given
            request["SubjectAlternativeNames"] = [domain, *[s for s in sans if s != domain]]
        arn = call(
            module, f"request a certificate for {domain}", client.request_certificate, **request
        )["CertificateArn"]
        cert = described(module, client, arn)
        changed = True
    cert = with_records(module, client, cert)
    # the certificates it replaces (other names), once nothing uses them
    deleted = [delete(module, client, c) for c in others if not c.get("InUseBy")]
    changed = changed or bool(deleted)
    superseded = [c["CertificateArn"] for c in others if c.get("InUseBy")]
    if p["wait"] and not module.check_mode:
        cert = wait_issued(module, client, cert, p["wait_timeout"])
    module.exit_json(
        changed=changed,
        arn=cert["CertificateArn"],
        status=cert["Status"],
        validation_records=records_of(cert),
        superseded=superseded,
        deleted=deleted,
    )


if __name__ == "__main__":
    main()
