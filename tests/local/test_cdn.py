"""CloudFront in front of the site, locally: the controller's stand-in of the
distribution site.yml made in the emulator (scripts/localaws/dataplane_cdn.py)
serves the site's URL. The page comes from the artifact bucket (what a release
published there), cached until an invalidation; the API goes through
uncached to the external balancer with the origin check's header, and the
balancer refuses whatever comes without it; plain HTTP is redirected; the
web ACL's rate limit blocks an address past it."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from fleetlib import ROOT, emulator, fleet, origin_header, skip_unless_asked

pytestmark = skip_unless_asked

BUCKET = "threetier-local-artifacts"


def distribution() -> dict:
    """The kit's distribution in the emulator (its summary)."""
    items = emulator("cloudfront").list_distributions()["DistributionList"].get("Items", [])
    (found,) = [d for d in items if d["Comment"] == "threetier-local-site"]
    return found


@pytest.fixture
def probe():
    """A file of the test's own in the folder the distribution reads (the
    page's folder); removed afterwards."""
    s3 = emulator("s3")
    key = f"site/probe-{uuid.uuid4().hex}.txt"
    yield s3, key
    s3.delete_object(Bucket=BUCKET, Key=key)


def test_the_page_is_the_one_the_release_published_in_the_bucket():
    s3 = emulator("s3")
    page = requests.get(fleet()["site"] + "/", timeout=10)
    assert page.status_code == 200
    kept = s3.get_object(Bucket=BUCKET, Key="site/index.html")["Body"].read()
    assert page.content == kept
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    script = requests.get(fleet()["site"] + "/app.js", timeout=10)
    assert script.status_code == 200
    assert script.content == s3.get_object(Bucket=BUCKET, Key="site/app.js")["Body"].read()


def test_the_edge_caches_the_page_until_an_invalidation(probe):
    s3, key = probe
    path = "/" + key.removeprefix("site/")
    url = fleet()["site"] + path
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"first", ContentType="text/plain")
    assert requests.get(url, timeout=10).content == b"first"
    # a new object without an invalidation: the edge keeps what it has
    # (no Cache-Control: the cache policy's default TTL, a day)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"second", ContentType="text/plain")
    assert requests.get(url, timeout=10).content == b"first"
    emulator("cloudfront").create_invalidation(
        DistributionId=distribution()["Id"],
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": [path]},
            "CallerReference": uuid.uuid4().hex,
        },
    )
    deadline = time.monotonic() + 30
    while (body := requests.get(url, timeout=10).content) != b"second":
        assert time.monotonic() < deadline, f"still {body!r} 30 s after the invalidation"
        time.sleep(0.5)


def test_a_file_the_bucket_lacks_is_not_served_from_anywhere_else(probe):
    _, key = probe
    missing = requests.get(fleet()["site"] + "/" + key.removeprefix("site/"), timeout=10)
    assert missing.status_code in (403, 404)


def test_the_api_goes_through_uncached():
    site = fleet()["site"]
    title = f"edge {uuid.uuid4().hex[:12]}"
    created = requests.post(site + "/api/tasks", json={"title": title}, timeout=10)
    assert created.status_code == 201, created.text
    task = site + f"/api/tasks/{created.json()['id']}"
    assert requests.get(task, timeout=10).json()["title"] == title
    changed = requests.patch(task, json={"title": title + " done"}, timeout=10)
    assert changed.status_code == 200, changed.text
    # a cache would answer the first answer again
    assert requests.get(task, timeout=10).json()["title"] == title + " done"
    assert requests.delete(task, timeout=10).status_code == 204
    assert requests.get(task, timeout=10).status_code == 404
    assert requests.get(site + "/healthz", timeout=10).status_code == 200
    # a method the page's behaviour does not allow: refused at the edge
    assert requests.post(site + "/index.html", data=b"x", timeout=10).status_code == 403


def test_the_external_balancer_forwards_only_what_carries_the_origin_header():
    url = fleet()["url"]
    name, value = origin_header()
    bare = requests.get(url + "/api/tasks?limit=1", headers={name: None}, timeout=10)
    assert bare.status_code == 403
    assert bare.headers["Content-Type"].startswith("application/json")
    assert "error" in bare.json()
    wrong = requests.get(url + "/api/tasks?limit=1", headers={name: value + "x"}, timeout=10)
    assert wrong.status_code == 403
    right = requests.get(url + "/api/tasks?limit=1", headers={name: value}, timeout=10)
    assert right.status_code == 200


def test_plain_http_at_the_site_is_redirected_to_https_for_the_page_only():
    page = requests.get(fleet()["site_http"] + "/?q=1", allow_redirects=False, timeout=10)
    assert page.status_code == 301
    assert page.headers["Location"] == fleet()["site"] + "/?q=1"
    # the API's behaviour is https-only: CloudFront refuses plain HTTP
    api = requests.get(fleet()["site_http"] + "/api/tasks", allow_redirects=False, timeout=10)
    assert api.status_code == 403


def test_the_origin_secret_is_in_no_log():
    _, value = origin_header()
    assert len(value) >= 32
    assert value not in fleet()["up"]
    controller = (ROOT / ".local" / "controller.log").read_text(errors="replace")
    assert value not in controller


def reloads() -> int:
    """How many times the controller has reloaded the stand-in so far."""
    log = (ROOT / ".local" / "controller.log").read_text(errors="replace")
    return sum(1 for x in log.splitlines() if "reloaded tt-local-cdn-" in x)


def set_rate_limit(limit: int) -> None:
    """The distribution's web ACL's rate rule, as an operator changes it
    (aws_waf_rate_limit); then until the stand-in has reloaded with it."""
    waf = emulator("wafv2")
    arn = emulator("cloudfront").get_distribution_config(Id=distribution()["Id"])[
        "DistributionConfig"
    ]["WebACLId"]
    name, acl_id = arn.rsplit("/", 2)[-2:]
    got = waf.get_web_acl(Name=name, Scope="CLOUDFRONT", Id=acl_id)
    acl = got["WebACL"]
    rules = acl["Rules"]
    (rate,) = [r for r in rules if "RateBasedStatement" in r["Statement"]]
    if rate["Statement"]["RateBasedStatement"]["Limit"] == limit:
        return
    rate["Statement"]["RateBasedStatement"]["Limit"] = limit
    before = reloads()
    waf.update_web_acl(
        Name=name,
        Scope="CLOUDFRONT",
        Id=acl_id,
        DefaultAction=acl["DefaultAction"],
        Rules=rules,
        VisibilityConfig=acl["VisibilityConfig"],
        LockToken=got["LockToken"],
    )
    deadline = time.monotonic() + 30
    while reloads() == before:
        assert time.monotonic() < deadline, "the stand-in did not reload within 30 s"
        time.sleep(0.5)
    time.sleep(1)  # the new workers take over from the old


def test_the_web_acls_rate_limit_blocks_an_address_past_it():
    """The rate-based rule's number comes from the web ACL in the emulator
    (aws_waf_rate_limit, 2,000 per 5 minutes): lowered to 30 for this test,
    the 31st request from this address within the window is blocked with
    WAF's 403, before any origin; restored, the address is served again."""
    url = fleet()["site"] + "/healthz"
    set_rate_limit(30)
    try:
        answers = [requests.get(url, timeout=10).status_code for _ in range(40)]
    finally:
        set_rate_limit(2000)
    assert answers == [200] * 30 + [403] * 10, answers
    assert requests.get(url, timeout=10).status_code == 200
