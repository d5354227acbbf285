"""The local controller's pure parts (scripts/localaws/controller_world.py,
dataplane_haproxy.py, dataplane_nft.py and the controller's reporter): what
an emulator resource becomes in HAProxy, nftables and /etc/hosts, and what a
HAProxy row means for a target's health. No podman, no moto: each test runs
in milliseconds, and fails when the mapping the contract describes
(docs/local-data-plane.md, "The controller") breaks.

One test applies a rendered ruleset with the host's nft in a throw-away
network namespace (skipped where that is impossible): the text must be what
nft accepts, not only what the tests expect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from localaws import dataplane_haproxy as hap
from localaws import dataplane_nft as nft
from localaws.controller import Log, Reporter, database_addresses
from localaws.controller_world import (
    Action,
    Condition,
    DbInstance,
    HealthCheck,
    Instance,
    Listener,
    ListenerRule,
    LoadBalancer,
    NetworkInterface,
    Permission,
    Rule,
    SecurityGroup,
    Subnet,
    Target,
    TargetGroup,
    World,
    _default_action,
    eni_description,
    free_address,
    gateway,
    group_members,
    hostname_for_ip,
    hosts_entries,
    lb_container_name,
    local_image,
    mac_for_ip,
    merge_hosts,
    network_name,
    resolve_rules,
    short_name,
)
from localaws.dataplane_podman import Container

ACCOUNT = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
TG_APP = f"{ACCOUNT}:targetgroup/threetier-local-app/0123456789abcdef"
TG_WEB = f"{ACCOUNT}:targetgroup/threetier-local-web/fedcba9876543210"
LB_INT = f"{ACCOUNT}:loadbalancer/app/threetier-local-int/1111111111111111"
LB_EXT = f"{ACCOUNT}:loadbalancer/app/threetier-local-ext/2222222222222222"


def group(
    arn: str = TG_APP,
    name: str = "threetier-local-app",
    port: int = 5000,
    slow_start: int = 0,
    hc_port: str = "traffic-port",
    **hc: Any,
) -> TargetGroup:
    check = {"path": "/healthz", "interval": 5, "timeout": 3, "healthy": 2, "unhealthy": 2, **hc}
    check["port"] = hc_port
    return TargetGroup(
        arn=arn,
        name=name,
        port=port,
        protocol="HTTP",
        target_type="instance",
        health_check=HealthCheck(**check),
        slow_start=slow_start,
        deregistration_delay=10,
        targets=(),
    )


def balancer(listeners: tuple[Listener, ...], idle: int = 60) -> LoadBalancer:
    return LoadBalancer(
        arn=LB_INT,
        name="threetier-local-int",
        dns_name="internal-threetier-local-int-1.us-east-1.elb.amazonaws.com",
        scheme="internal",
        state="active",
        subnets=("subnet-a", "subnet-b"),
        security_groups=("sg-albint",),
        idle_timeout=idle,
        listeners=listeners,
    )


def forward(port: int = 5000, tg: str = TG_APP, protocol: str = "HTTP") -> Listener:
    return Listener(f"listener-{port}", port, protocol, Action("forward", target_group_arn=tg))


# --------------------------------------------------------------------------
# HAProxy: configuration and runtime keywords from a target group


def test_server_keywords_spell_out_the_target_groups_check() -> None:
    words = hap.server_keywords(group(slow_start=30), transition_interval=1)
    assert " ".join(words) == (
        "check inter 5s rise 2 fall 2 fastinter 1s downinter 1s slowstart 30s"
        " pool-max-conn 64 pool-purge-delay 10s"
    )
    plain = hap.server_keywords(group(healthy=5, unhealthy=3, interval=15), 0)
    assert plain[:7] == ["check", "inter", "15s", "rise", "5", "fall", "3"]
    # idle connections kept for the next requests (a server added at run
    # time keeps none by default)
    assert plain[7:] == ["pool-max-conn", "64", "pool-purge-delay", "10s"]
    assert hap.server_keywords(group(hc_port="8081"), 0)[7:9] == ["port", "8081"]


@pytest.mark.parametrize(
    ("matcher", "expect"),
    [
        ("200", "status 200"),
        ("200,202", "rstatus ^(200|202)$"),
        ("200-203", "rstatus ^(200|201|202|203)$"),
        ("200, 204-205", "rstatus ^(200|204|205)$"),
        ("200-299", "rstatus ^(2[0-9][0-9])$"),
        ("200-219,302", "rstatus ^(20[0-9]|21[0-9]|302)$"),
        ("200-399", "rstatus ^(2[0-9][0-9]|3[0-9][0-9])$"),
    ],
)
def test_matcher_becomes_an_http_check_expectation(matcher: str, expect: str) -> None:
    assert hap.matcher_expect(matcher) == expect


def test_config_ports_the_alb_frontend_and_backend() -> None:
    groups = {TG_APP: group(slow_start=30, interval=6, timeout=4)}
    text = hap.render_config(balancer((forward(),), idle=45), groups, 1)
    lines = [x.strip() for x in text.splitlines()]
    for expected in (
        "frontend listener-5000",
        "bind :5000",
        "option forwardfor",
        "http-request set-header X-Forwarded-Proto http",
        "http-request set-header X-Forwarded-Port 5000",
        "default_backend threetier-local-app",
        "backend threetier-local-app",
        "option httpchk GET /healthz",
        "http-check expect status 200",
        "timeout check 4s",
        "timeout client 45s",
        "timeout server 45s",
        "timeout http-keep-alive 45s",
        "retries 2",
        "option redispatch 1",
        "retry-on conn-failure empty-response",
        "load-server-state-from-file global",
        f"stats socket {hap.RUN_DIR}/{hap.SOCKET} mode 600 level admin",
        f"server-state-file {hap.RUN_DIR}/{hap.STATE_FILE}",
    ):
        assert expected in lines, expected
    # a fresh balancer has no server: targets enter at run time
    assert not [x for x in lines if x.startswith("server ")]


def origin_checked(value: str = "s3cr3t-Value") -> Listener:
    """The external ALB's HTTPS listener with aws_load_balancers' origin
    check: a JSON 403 by default, a rule forwarding requests that carry the
    header, and a rule without a local stand-in."""
    refuse = Action(
        "fixed-response",
        fixed=(
            ("ContentType", "application/json"),
            ("MessageBody", '{"error": "forbidden"}'),
            ("StatusCode", "403"),
        ),
    )
    return Listener(
        "listener-443",
        443,
        "HTTPS",
        refuse,
        rules=(
            ListenerRule(
                1,
                (Condition("http-header", (value,), "X-Origin-Verify"),),
                Action("forward", TG_WEB),
            ),
            ListenerRule(5, (Condition("source-ip", ("10.0.0.0/8",)),), Action("forward", TG_APP)),
            ListenerRule(
                7,
                (
                    Condition("path-pattern", ("/old/*", "/a?c")),
                    Condition("host-header", ("*.test",)),
                ),
                Action("redirect", redirect=(("Path", "/new"), ("StatusCode", "HTTP_302"))),
            ),
        ),
    )


def test_listener_rules_are_tried_by_priority_before_the_default() -> None:
    groups = {TG_WEB: group(TG_WEB, "threetier-local-web", 80), TG_APP: group()}
    lb = balancer((origin_checked(),))
    text = hap.render_config(lb, groups, 1, certificates={"listener-443": "ext.pem"})
    lines = [x.strip() for x in text.splitlines()]
    head = lines.index("frontend listener-443")
    body = lines[head : lines.index("", head)]
    ruled = [x for x in body if "txn.rule" in x or x.startswith("# rule")]
    assert ruled == [
        "http-request set-var(txn.rule) int(1) if !{ var(txn.rule) -m found }"
        " { req.hdr(X-Origin-Verify) -m reg -i '^s3cr3t\\-Value$' }",
        "# rule 5 (source-ip): no local stand-in",
        "http-request set-var(txn.rule) int(7) if !{ var(txn.rule) -m found }"
        " { path -m reg '^/old/.*$' '^/a.c$' }"
        " { req.hdr(host),field(1,:) -m reg -i '^.*\\.test$' }",
        "http-request redirect location %[ssl_fc,iif(https,http)]://%[req.hdr(host),field(1,:)]"
        ":%[dst_port]/new%[url,regsub(^[^?]*,)] code 302 if { var(txn.rule) -m int 7 }",
        'http-request return status 403 content-type "application/json"'
        ' string "{\\"error\\": \\"forbidden\\"}" if !{ var(txn.rule) -m found }',
        "use_backend threetier-local-web if { var(txn.rule) -m int 1 }",
    ]
    # a group only a rule forwards to is a backend too (its targets are
    # checked, as a target group a rule names is on AWS)
    assert "backend threetier-local-web" in lines
    assert "backend threetier-local-app" in lines


def test_servers_in_a_reload_carry_the_runtime_keywords() -> None:
    """The file and `add server` get one set of keywords: a server written
    into the file at a reload checks exactly as one added at run time."""
    tg = group(slow_start=10)
    lb = balancer((forward(),))
    servers = {tg.name: [("i-0abc", "10.0.3.21:5000"), ("i-0def", "10.0.4.22:5000")]}
    text = hap.render_config(lb, {TG_APP: tg}, 1, servers)
    keywords = " ".join(hap.server_keywords(tg, 1))
    assert f"    server i-0abc 10.0.3.21:5000 {keywords}" in text.splitlines()
    assert f"    server i-0def 10.0.4.22:5000 {keywords}" in text.splitlines()
    # the servers are not structure: same digest with and without them
    assert hap.structure_of(text) == hap.structure_of(hap.render_config(lb, {TG_APP: tg}, 1))


def test_structure_digest_follows_listeners_and_group_settings() -> None:
    lb = balancer((forward(),))
    base = hap.structure_of(hap.render_config(lb, {TG_APP: group()}, 1))
    assert len(base) == 16
    assert base == hap.structure_of(hap.render_config(lb, {TG_APP: group()}, 1))
    for changed in (
        hap.render_config(lb, {TG_APP: group(interval=6)}, 1),
        hap.render_config(lb, {TG_APP: group(healthy=3)}, 1),
        hap.render_config(lb, {TG_APP: group(slow_start=30)}, 1),
        hap.render_config(lb, {TG_APP: group(matcher="200-299")}, 1),
        hap.render_config(lb, {TG_APP: group()}, 0),
        hap.render_config(balancer((forward(),), idle=30), {TG_APP: group()}, 1),
        hap.render_config(balancer((forward(5001),)), {TG_APP: group()}, 1),
    ):
        assert hap.structure_of(changed) != base


def redirect_to_https() -> Listener:
    """HTTP on 80 answering a permanent redirect to HTTPS on 443 (the kit's
    external balancer with a certificate)."""
    return Listener(
        "l80",
        80,
        "HTTP",
        Action(
            "redirect",
            redirect=(("Port", "443"), ("Protocol", "HTTPS"), ("StatusCode", "HTTP_301")),
        ),
    )


def test_listener_actions_without_a_group() -> None:
    redirect = redirect_to_https()
    fixed = Listener(
        "l81",
        81,
        "HTTP",
        Action(
            "fixed-response",
            fixed=(
                ("ContentType", "text/plain"),
                ("MessageBody", 'no "way"'),
                ("StatusCode", "404"),
            ),
        ),
    )
    https = forward(443, protocol="HTTPS")
    missing = forward(82, tg=f"{ACCOUNT}:targetgroup/gone/0")
    text = hap.render_config(balancer((redirect, fixed, https, missing)), {TG_APP: group()}, 1)
    assert (
        "    http-request redirect location https://%[req.hdr(host),field(1,:)]"
        "%[capture.req.uri] code 301"
    ) in text.splitlines()
    assert (
        '    http-request return status 404 content-type "text/plain" string "no \\"way\\""'
        in text.splitlines()
    )
    assert "frontend listener-443" not in text  # no certificate given to it
    assert "# listener 443/HTTPS: no certificate here yet" in text
    assert "frontend listener-82" in text
    listener_82 = text.split("frontend listener-82", 1)[1].split("\n\n", 1)[0]
    assert "default_backend" not in listener_82  # no backend for the group that is gone
    assert "backend gone" not in text
    assert "    http-request return status 503" in text.splitlines()


def test_default_action_reads_forward_configs() -> None:
    weighted = [
        {
            "Type": "forward",
            "Order": 1,
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": TG_WEB, "Weight": 1},
                    {"TargetGroupArn": TG_APP, "Weight": 9},
                ]
            },
        }
    ]
    assert _default_action(weighted) == Action("forward", target_group_arn=TG_APP)
    assert _default_action([{"Type": "forward", "TargetGroupArn": TG_WEB}]) == Action(
        "forward", target_group_arn=TG_WEB
    )
    assert _default_action([]) is None


def test_server_name_is_the_target_id() -> None:
    assert hap.server_name(Target("i-0abc", 5000, "initial"), 5000) == "i-0abc"
    assert hap.server_name(Target("i-0abc", 5001, "initial"), 5000) == "i-0abc_5001"


# --------------------------------------------------------------------------
# HAProxy rows -> target health

STAT = (
    "# pxname,svname,scur,status,weight,uweight,check_status,check_code,check_desc,addr\n"
    "listener-5000,FRONTEND,0,OPEN,,,,,,\n"
    "threetier-local-app,i-0abc,2,UP,1,1,L7OK,200,Layer7 check passed,10.0.3.21:5000\n"
    "threetier-local-app,i-0def,0,DOWN 1/2,0,0,L7OK,200,Layer7 check passed,10.0.4.22:5000\n"
    "threetier-local-app,BACKEND,2,UP,1,1,,,,\n"
    "threetier-local-web,BACKEND,0,DOWN,0,0,,,,\n"
)


def test_parse_stat_keeps_backends_without_servers() -> None:
    rows = hap.parse_stat(STAT)
    assert set(rows) == {"threetier-local-app", "threetier-local-web"}
    assert rows["threetier-local-web"] == {}
    up = rows["threetier-local-app"]["i-0abc"]
    assert (up.kind, up.uweight, up.sessions, up.address) == ("UP", 1, 2, "10.0.3.21:5000")
    assert rows["threetier-local-app"]["i-0def"].kind == "DOWN"


def row(status: str, check: str = "L7OK", code: str = "200", uweight: int = 0) -> hap.Row:
    return hap.Row("b", "i-0abc", status, uweight, 0, check, code, "", "10.0.3.21:5000")


def test_health_initial_until_up_then_healthy() -> None:
    tg = group()
    memory = hap.ServerMemory()
    assert hap.health_from_row(row("MAINT", "INI", ""), memory, tg, 0).state == "initial"
    assert hap.health_from_row(row("DOWN"), memory, tg, 1) == hap.INITIAL
    assert hap.health_from_row(row("DOWN 1/2"), memory, tg, 2) == hap.INITIAL
    assert hap.health_from_row(row("UP", uweight=0), memory, tg, 3) == hap.HEALTHY
    assert memory.ever_up
    # failing but not yet past the unhealthy threshold: still healthy
    assert hap.health_from_row(row("UP 1/2", "L4CON", ""), memory, tg, 4).state == "healthy"


def test_health_unhealthy_when_down_after_up() -> None:
    memory = hap.ServerMemory(ever_up=True)
    h = hap.health_from_row(row("DOWN", "L7STS", "500", uweight=1), memory, group(), 0)
    assert h == hap.Health(
        "unhealthy",
        "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [500]",
    )
    timeout = hap.health_from_row(row("DOWN", "L4TOUT", ""), memory, group(), 0)
    assert (timeout.state, timeout.reason) == ("unhealthy", "Target.Timeout")
    refused = hap.health_from_row(row("DOWN", "L4CON", ""), memory, group(), 0)
    assert (refused.state, refused.reason) == ("unhealthy", "Target.FailedHealthChecks")
    # coming back is still unhealthy until the healthy threshold
    assert hap.health_from_row(row("DOWN 1/2"), memory, group(), 0).state == "unhealthy"


def test_health_unhealthy_when_never_up_and_failing_for_the_threshold() -> None:
    """An ALB marks a new target unhealthy after `unhealthy` failed checks at
    the group's interval; the row shows only the last check, so the time they
    take is counted (not the faster transition interval: a booting instance
    must not look unhealthy sooner than on AWS)."""
    tg = group(unhealthy=3, interval=5)
    memory = hap.ServerMemory()
    failing = row("DOWN", "L4CON", "")
    assert hap.health_from_row(failing, memory, tg, 100.0).state == "initial"
    assert hap.health_from_row(failing, memory, tg, 109.0).state == "initial"
    # a passing check (still booting, now answering) starts the count again
    assert hap.health_from_row(row("DOWN 1/2"), memory, tg, 109.5).state == "initial"
    assert hap.health_from_row(failing, memory, tg, 110.0).state == "initial"
    assert hap.health_from_row(failing, memory, tg, 119.0).state == "initial"
    assert hap.health_from_row(failing, memory, tg, 120.0).state == "unhealthy"
    # once unhealthy it stays so until UP, passing checks or not
    assert hap.health_from_row(row("DOWN 1/2"), memory, tg, 121.0).state == "unhealthy"
    assert hap.health_from_row(row("UP"), memory, tg, 122.0).state == "healthy"
    # a threshold of 2 takes one interval after the first failure
    two = hap.ServerMemory()
    assert hap.health_from_row(failing, two, group(), 0.0).state == "initial"
    assert hap.health_from_row(failing, two, group(), 4.9).state == "initial"
    assert hap.health_from_row(failing, two, group(), 5.0).state == "unhealthy"


def test_health_after_a_controller_restart() -> None:
    """Memory lost: a DOWN server with its weight back was UP before."""
    down = row("DOWN", "L4CON", "", uweight=1)
    assert hap.health_from_row(down, hap.ServerMemory(), group(), 0).state == "unhealthy"
    fresh = row("DOWN", "L4CON", "", uweight=0)
    assert hap.health_from_row(fresh, hap.ServerMemory(), group(), 0).state == "initial"


class FakeSocket:
    """Records runtime commands and answers like HAProxy 2.6."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.sent: list[str] = []

    def ask(self, command: str) -> str:
        self.sent.append(command)
        for prefix, answer in self.answers.items():
            if command.startswith(prefix):
                return answer
        return "\n"


def runtime(answers: dict[str, str]) -> tuple[hap.Runtime, FakeSocket]:
    fake = FakeSocket(answers)
    rt = hap.Runtime(Path("/nonexistent"))
    rt.ask = fake.ask  # type: ignore[method-assign]
    return rt, fake


def test_runtime_enters_a_target_as_a_target_group_does() -> None:
    rt, fake = runtime({"add server": "New server registered.\n"})
    keywords = hap.server_keywords(group(), 1)
    rt.add("app", "i-0abc", "10.0.3.21:5000", keywords)
    rt.enter("app", "i-0abc")
    rt.give_weight("app", "i-0abc")
    assert fake.sent == [
        "add server app/i-0abc 10.0.3.21:5000 " + " ".join(keywords),
        "enable health app/i-0abc",
        "set weight app/i-0abc 0; set server app/i-0abc state ready; "
        "set server app/i-0abc health down",
        "set weight app/i-0abc 100%",
    ]
    refused, _ = runtime({"add server": "Already exists a server with the same name.\n"})
    with pytest.raises(hap.HaproxyRefusedError):
        refused.add("app", "i-0abc", "10.0.3.21:5000", keywords)


def test_runtime_removal_shuts_sessions_when_refused() -> None:
    answers = {"del server": "Server still has connections attached to it, cannot remove it.\n"}
    rt, fake = runtime(answers)
    assert not rt.remove("app", "i-0abc")
    assert fake.sent == [
        "set server app/i-0abc state maint",
        "del server app/i-0abc",
        "shutdown sessions server app/i-0abc",
        "del server app/i-0abc",
    ]
    rt, fake = runtime({"del server": "Server deleted.\n"})
    assert rt.remove("app", "i-0abc")
    assert fake.sent == ["set server app/i-0abc state maint", "del server app/i-0abc"]


# --------------------------------------------------------------------------
# Security groups -> nftables

SG_ALB = SecurityGroup(
    "sg-albint",
    "alb-int",
    "vpc-1",
    ingress=(Permission("tcp", 5000, 5000, groups=("sg-web",)),),
    egress=(Permission("-1", None, None, cidrs=("0.0.0.0/0",)),),
)
SG_APP = SecurityGroup(
    "sg-app",
    "app",
    "vpc-1",
    ingress=(
        Permission("tcp", 5000, 5000, groups=("sg-albint",)),
        Permission("tcp", 9100, 9100, groups=("sg-app",)),
    ),
    egress=(Permission("-1", None, None, cidrs=("0.0.0.0/0",)),),
)
SG_DB = SecurityGroup(
    "sg-db",
    "db",
    "vpc-1",
    ingress=(Permission("tcp", 5432, 5432, groups=("sg-app",)),),
    egress=(),
)
SG_WEB = SecurityGroup(
    "sg-web",
    "web",
    "vpc-1",
    ingress=(
        Permission("tcp", 80, 80, groups=("sg-albext",)),  # no member: admits nobody
        Permission("icmp", 8, -1, cidrs=("10.0.0.0/16",)),
        Permission("udp", 1000, 2000, cidrs=("10.0.0.0/8", "10.1.2.3/32", "2001:db8::/64")),
        Permission("-1", None, None, cidrs=("192.168.0.0/24",)),
    ),
    egress=(Permission("tcp", 443, 443, cidrs=("0.0.0.0/0",)),),
)
GROUPS = {g.id: g for g in (SG_ALB, SG_APP, SG_DB, SG_WEB)}


def instance(iid: str, ip: str, groups: tuple[str, ...], state: str = "running") -> Instance:
    return Instance(iid, state, "subnet-a", ip, "ami-1", groups, ())


def kit_world() -> World:
    return World(
        instances={
            "i-web1": instance("i-web1", "10.0.3.21", ("sg-web",)),
            "i-app1": instance("i-app1", "10.0.3.31", ("sg-app",)),
            "i-app2": instance("i-app2", "10.0.4.32", ("sg-app",)),
            "i-gone": instance("i-gone", "10.0.4.99", ("sg-app",), state="terminated"),
        },
        interfaces={
            "eni-gone": NetworkInterface(
                "eni-gone", "subnet-b", "10.0.4.99", "", ("sg-app",), "i-gone"
            ),
        },
        load_balancers={LB_INT: balancer(())},
        db_instances={"db1": DbInstance("db1", "db1.x.rds.amazonaws.com", 5432, ("sg-db",))},
        security_groups=GROUPS,
    )


def test_group_members_are_live_instances_alb_nodes_and_databases() -> None:
    members = group_members(
        kit_world(), {LB_INT: ["10.0.3.250", "10.0.4.250"]}, {"db1": "10.0.5.10"}
    )
    assert members["sg-app"] == {"10.0.3.31", "10.0.4.32"}  # not the terminated one
    assert members["sg-albint"] == {"10.0.3.250", "10.0.4.250"}
    assert members["sg-web"] == {"10.0.3.21"}
    assert members["sg-db"] == {"10.0.5.10"}


def test_rules_resolve_groups_to_members_and_collapse_sources() -> None:
    members = {"sg-albint": {"10.0.3.250", "10.0.4.250"}, "sg-app": {"10.0.3.31"}}
    ingress, egress = resolve_rules(["sg-app"], GROUPS, members)
    assert ingress == [
        Rule("tcp", 5000, 5000, ("10.0.3.250/32", "10.0.4.250/32"), "sg-app"),
        Rule("tcp", 9100, 9100, ("10.0.3.31/32",), "sg-app"),
    ]
    assert egress == [Rule("-1", None, None, ("0.0.0.0/0",), "sg-app")]
    web_in, _ = resolve_rules(["sg-web"], GROUPS, members)
    assert [r.protocol for r in web_in] == ["icmp", "udp", "-1"]  # the memberless rule left out
    assert web_in[1].sources == ("10.0.0.0/8", "2001:db8::/64")  # 10.1.2.3 is inside 10/8


def test_ruleset_is_stateful_drop_by_default() -> None:
    members = {"sg-albint": {"10.0.3.250", "10.0.4.250"}, "sg-app": {"10.0.3.31"}}
    text = nft.render_ruleset(*resolve_rules(["sg-app"], GROUPS, members), label="i-app1")
    lines = [x.strip() for x in text.splitlines()]
    assert lines[1:3] == [f"table inet {nft.TABLE}", f"delete table inet {nft.TABLE}"]
    assert lines.count("type filter hook input priority filter; policy drop;") == 1
    assert lines.count("type filter hook output priority filter; policy drop;") == 1
    assert lines.count("ct state established,related accept") == 2
    assert 'iifname "lo" accept' in lines
    assert 'oifname "lo" accept' in lines
    assert (
        'ip saddr { 10.0.3.250/32, 10.0.4.250/32 } tcp dport 5000 accept comment "sg-app"' in lines
    )
    assert 'ip saddr 10.0.3.31/32 tcp dport 9100 accept comment "sg-app"' in lines
    # AWS's default egress rule: everything out
    assert 'accept comment "sg-app"' in lines
    assert "reject" not in text


def test_rule_lines_for_each_protocol() -> None:
    web_in, web_out = resolve_rules(["sg-web"], GROUPS, {})
    text = nft.render_ruleset(web_in, web_out)
    lines = [x.strip() for x in text.splitlines()]
    assert 'ip saddr 10.0.0.0/16 icmp type 8 accept comment "sg-web"' in lines
    assert 'ip saddr 10.0.0.0/8 udp dport 1000-2000 accept comment "sg-web"' in lines
    assert 'ip6 saddr 2001:db8::/64 udp dport 1000-2000 accept comment "sg-web"' in lines
    assert 'ip saddr 192.168.0.0/24 accept comment "sg-web"' in lines
    # egress limited to 443: not an accept-all
    assert 'meta nfproto ipv4 tcp dport 443 accept comment "sg-web"' in lines
    assert 'accept comment "sg-web"' not in lines
    db_in, db_out = resolve_rules(["sg-db"], GROUPS, {})
    assert db_in == []  # no app member yet: nothing admitted
    assert db_out == []


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="needs root, nft and unshare (a throw-away network namespace)",
)
def test_nft_accepts_the_rendered_ruleset() -> None:
    members = {"sg-albint": {"10.0.3.250"}, "sg-app": {"10.0.3.31", "10.0.4.32"}}
    rules = resolve_rules(["sg-app", "sg-web"], GROUPS, members)
    text = nft.render_ruleset(*rules)
    # twice: the second replaces the first (the table's create/delete/create idiom)
    script = f"nft -f - <<'EOF'\n{text}\nEOF\nnft -f - <<'EOF'\n{text}\nEOF\nnft list ruleset"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"table inet {nft.TABLE}") == 1
    assert "tcp dport 9100" in result.stdout


# --------------------------------------------------------------------------
# Names, addresses, hosts


def test_names() -> None:
    assert short_name("threetier-local-app-a", "threetier-local-") == "app-a"
    assert short_name("other-env-app", "threetier-local-") == "other-env-app"
    subnet = Subnet("subnet-1", "vpc-1", "10.0.3.0/24", "us-east-1a", "threetier-local-app-a")
    assert network_name("tt-local-", subnet, "threetier-local-") == "tt-local-app-a"
    untagged = Subnet("subnet-2", "vpc-1", "172.31.0.0/20", "us-east-1a", "")
    assert network_name("tt-local-", untagged, "threetier-local-") == ""
    other = Subnet("subnet-3", "vpc-2", "10.9.0.0/24", "us-east-1a", "threetier-staging-app-a")
    assert network_name("tt-local-", other, "threetier-local-") == ""
    lb = balancer(())
    assert lb_container_name("tt-local-", lb, "threetier-local-") == "tt-local-lb-int"
    assert hostname_for_ip("10.0.3.21") == "ip-10-0-3-21"
    assert eni_description(LB_INT) == "ELB app/threetier-local-int/1111111111111111"
    assert (
        local_image("localhost/threetier-web:0.1.0@sha256:abc") == "localhost/threetier-web:0.1.0"
    )
    assert local_image("localhost/threetier-app:0.2.0") == "localhost/threetier-app:0.2.0"


def test_mac_from_ip_is_stable_and_local() -> None:
    assert mac_for_ip("10.0.3.21") == "02:00:0a:00:03:15"
    assert mac_for_ip("10.77.4.254") == "02:00:0a:4d:04:fe"


def test_addresses_of_a_subnet() -> None:
    assert gateway("10.0.3.0/24") == "10.0.3.1"
    assert free_address("10.0.3.0/24", []) == "10.0.3.254"
    assert free_address("10.0.3.0/24", ["10.0.3.254", "10.0.3.253"]) == "10.0.3.252"
    # .0-.3 and the broadcast address are AWS's
    assert free_address("10.0.3.0/29", ["10.0.3.6", "10.0.3.5"]) == "10.0.3.4"
    assert free_address("10.0.3.0/29", ["10.0.3.6", "10.0.3.5", "10.0.3.4"]) == ""


def test_a_database_restarting_keeps_its_endpoints_address() -> None:
    """The RDS endpoint's name resolves through a failover: a database
    container stopped for a moment keeps its address in the VPC's DNS (a
    missing entry sent every lookup to the resolver's 5 s timeout, outside
    the app's limits: a fleet test saw a 5 s stall of every request)."""
    asked: list[str] = []

    def address_of(c: Container) -> str:
        asked.append(c.name)
        return "10.0.5.10"

    def db(state: str) -> dict[str, Container]:
        return {"db1": Container("c1", "tt-local-db", state, 0, {}, ())}

    known: dict[str, str] = {}
    assert database_addresses(db("exited"), known, address_of) == {}  # never seen running
    assert asked == []
    assert database_addresses(db("running"), known, address_of) == {"db1": "10.0.5.10"}
    assert database_addresses(db("exited"), known, address_of) == {"db1": "10.0.5.10"}
    assert database_addresses(db("running"), known, address_of) == {"db1": "10.0.5.10"}
    assert asked == ["tt-local-db"]  # read once, remembered by container id


def test_hosts_block_replaced_in_place() -> None:
    world = World(
        load_balancers={
            LB_INT: balancer(()),
        },
        db_instances={"db1": DbInstance("db1", "DB1.x.rds.amazonaws.com", 5432, ())},
    )
    entries = hosts_entries(world, {LB_INT: "10.0.3.250"}, {"db1": "10.0.5.10"})
    assert entries == [
        ("10.0.5.10", "db1.x.rds.amazonaws.com"),
        ("10.0.3.250", "internal-threetier-local-int-1.us-east-1.elb.amazonaws.com"),
    ]
    podman = (
        "127.0.0.1\tlocalhost\n"
        "10.0.3.9\tdb1.x.rds.amazonaws.com\n"  # an --add-host entry: would win (first match)
        "10.0.3.21\tip-10-0-3-21 i-0abc\n"
    )
    merged = merge_hosts(podman, entries)
    assert merged.splitlines()[:2] == ["127.0.0.1\tlocalhost", "10.0.3.21\tip-10-0-3-21 i-0abc"]
    assert "10.0.5.10\tdb1.x.rds.amazonaws.com" in merged.splitlines()
    assert "10.0.3.9" not in merged
    assert merge_hosts(merged, entries) == merged  # unchanged: not written again
    moved = merge_hosts(merged, [("10.0.3.251", entries[1][1])])
    assert moved.count("# BEGIN threetier VPC DNS") == 1
    assert "10.0.3.251\tinternal-threetier-local-int" in moved
    assert "db1.x.rds" not in moved


# --------------------------------------------------------------------------
# Target health reports


class FakeReporter(Reporter):
    def __init__(self, status: dict[str, Any] | int) -> None:
        super().__init__("http://emulator", Log(stream=open(os.devnull, "w")), resend=10)  # noqa: SIM115
        self.status = status
        self.posts: list[list[dict[str, Any]]] = []

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if path == "/_threetier/status":
            if isinstance(self.status, int):
                raise urllib.error.HTTPError(path, self.status, "no", None, None)  # type: ignore[arg-type]
            return self.status
        assert body is not None
        self.posts.append(body["reports"])
        return {"accepted": len(body["reports"]), "ignored": 0}


def test_reports_wait_for_a_data_plane() -> None:
    plain = FakeReporter(404)
    plain.send({(TG_APP, "i-0abc", 5000): hap.HEALTHY})
    assert plain.posts == []
    off = FakeReporter({"data_plane": False})
    off.send({(TG_APP, "i-0abc", 5000): hap.HEALTHY})
    assert off.posts == []


def test_reports_send_state_changes_and_resend_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("localaws.controller.time.monotonic", lambda: clock[0])
    r = FakeReporter({"data_plane": True})
    a, b = (TG_APP, "i-0abc", 5000), (TG_APP, "i-0def", 5000)
    r.send({a: hap.INITIAL, b: hap.INITIAL})
    assert [x["state"] for x in r.posts[-1]] == ["initial", "initial"]
    assert r.posts[-1][0] == {
        "target_group_arn": TG_APP,
        "id": "i-0abc",
        "port": 5000,
        "state": "initial",
        "reason": "Elb.InitialHealthChecking",
        "description": "Initial health checks in progress",
    }
    clock[0] += 1
    r.send({a: hap.HEALTHY, b: hap.INITIAL})
    assert r.posts[-1] == [
        {"target_group_arn": TG_APP, "id": "i-0abc", "port": 5000, "state": "healthy"}
    ]
    clock[0] += 1
    count = len(r.posts)
    r.send({a: hap.HEALTHY, b: hap.INITIAL})  # nothing changed
    assert len(r.posts) == count
    clock[0] += 10
    r.send({a: hap.HEALTHY, b: hap.INITIAL})  # the periodic resend
    assert len(r.posts) == count + 1
    assert len(r.posts[-1]) == 2


# --------------------------------------------------------------------------
# HTTPS listeners: ACM's certificate, issued by the local CA (dataplane_tls)


def test_https_listener_terminates_tls_with_its_certificate() -> None:
    redirect = redirect_to_https()
    https = Listener(
        "l443",
        443,
        "HTTPS",
        Action("forward", target_group_arn=TG_APP),
        certificates=("arn:aws:acm:us-east-1:123456789012:certificate/x",),
        ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
    )
    lb = balancer((redirect, https))
    text = hap.render_config(
        lb, {TG_APP: group()}, 1, certificates={"l443": "abc.pem"}, published={"443": "8443"}
    )
    lines = text.splitlines()
    assert (
        "    bind :443 ssl crt /etc/haproxy/local/certs/abc.pem ssl-min-ver TLSv1.2 alpn http/1.1"
        in lines
    )
    https_part = text.split("frontend listener-443", 1)[1]
    # its group is a backend although no HTTP listener forwards to it (the
    # balancer restarted without end on a default_backend that did not exist)
    assert f"    default_backend {group().name}" in https_part.splitlines()
    assert f"backend {group().name}" in lines
    assert [b.arn for b in hap.backends_of(lb, {TG_APP: group()})] == [TG_APP]
    assert "    http-request set-header X-Forwarded-Proto https" in https_part.splitlines()
    assert "    http-request set-header X-Forwarded-Port 443" in https_part.splitlines()
    # the published balancer's redirect names the host's port for 443
    assert (
        "    http-request redirect location https://%[req.hdr(host),field(1,:)]:8443"
        "%[capture.req.uri] code 301"
    ) in lines
    # a TLS 1.3-only policy; a new certificate file is a new structure (a reload)
    only13 = Listener(**{**https.__dict__, "ssl_policy": "ELBSecurityPolicy-TLS13-1-3-2021-06"})
    text13 = hap.render_config(
        balancer((only13,)), {TG_APP: group()}, 1, certificates={"l443": "a.pem"}
    )
    assert "ssl-min-ver TLSv1.3" in text13
    other = hap.render_config(
        balancer((only13,)), {TG_APP: group()}, 1, certificates={"l443": "b.pem"}
    )
    assert hap.structure_of(other) != hap.structure_of(text13)


def _make_ca(directory: Path, name: str = "test CA") -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class FakeAcm:
    """DescribeCertificate's answer for one certificate (the names ACM gives)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0

    def describe_certificate(self, CertificateArn: str) -> dict:  # noqa: N803 (boto3's name)
        self.calls += 1
        return {"Certificate": {"DomainName": self.names[0], "SubjectAlternativeNames": self.names}}


def test_certificates_are_issued_by_the_local_ca_for_acms_names(tmp_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from localaws import dataplane_tls as tls

    ca = tmp_path / "ca"
    _make_ca(ca)
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/x"
    certs = tls.Certificates(FakeAcm(["www.site.test", "api.site.test"]), ca)
    assert certs.ca_ready()
    out = tmp_path / "certs"
    first = certs.ensure(arn, out)
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    pem = first.read_bytes()
    assert b"PRIVATE KEY" in pem
    leaf, chain = x509.load_pem_x509_certificates(pem)
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
    leaf.verify_directly_issued_by(ca_cert)
    assert chain == ca_cert
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.site.test", "api.site.test", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    # the same again: the file is kept, ACM asked once
    again = certs.ensure(arn, out)
    assert again == first
    assert again.read_bytes() == pem
    assert certs.acm.calls == 1
    # a file gone since the last check is issued again at once (the check's
    # memory follows the file)
    first.unlink()
    assert certs.ensure(arn, out) == first
    assert first.is_file()
    # near its end, or from another CA: issued again
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=70)
    assert tls.needs_issuing(first, ca, now=later)
    assert not tls.needs_issuing(first, ca)
    other = tmp_path / "other-ca"
    _make_ca(other, "another CA")
    assert tls.needs_issuing(first, other)
    # other names: another file (the balancer's configuration changes)
    renamed = tls.Certificates(FakeAcm(["www.site.test"]), ca).ensure(arn, out)
    assert renamed != first
    assert not tls.Certificates(FakeAcm(["x.test"]), tmp_path / "none").ca_ready()


# --------------------------------------------------------------------------
# A balancer that dies at start: its removal says why (HAProxy's last words)


def test_a_dead_containers_last_words_are_read() -> None:
    from localaws.controller import _last_words
    from localaws.dataplane_podman import Podman

    base = "localhost/threetier-base:bookworm"
    if subprocess.run(["podman", "image", "exists", base], check=False).returncode != 0:
        pytest.skip(f"{base} is not built (scripts/build-base-image.sh)")
    name = f"tt-last-words-{os.getpid()}"
    script = "echo starting; echo '[ALERT] config: no such backend' >&2; exit 1"
    subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True, check=False)
    try:
        subprocess.run(
            ["podman", "run", "--name", name, base, "sh", "-c", script],
            capture_output=True,
            check=False,
            timeout=60,
        )
        podman = Podman()
        assert podman.last_lines(name, 3) == ["starting", "[ALERT] config: no such backend"]
        assert _last_words(podman, name) == ": starting | [ALERT] config: no such backend"
        assert podman.last_lines("tt-no-such-container") == []
        assert _last_words(podman, "tt-no-such-container") == ""
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
