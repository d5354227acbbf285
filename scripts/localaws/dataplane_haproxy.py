"""HAProxy standing in for an Application Load Balancer.

One HAProxy container per ALB. What is structure (listeners, target-group
settings, the ALB's idle timeout) is the configuration file, changed by a
reload that keeps every server's state (server-state-file). What changes all
the time (targets registered, draining, removed) goes through the runtime API
on the admin socket, which the controller reaches from the host through a
bind-mounted directory: no ``podman exec`` per call.

A target group's checks become the servers' check keywords, produced by one
function for both the file and ``add server`` (HAProxy gives servers added at
run time no default-server settings, so they must be spelled out). A target is
brought into service the way a target group takes one: no request before its
health check passed the healthy threshold, which HAProxy alone would not do
(a server leaving maintenance counts as up at once). This is the ``enter`` of
roles/lb_target/files/haproxy_runtime.py, which this module replaces.

What a server's row means for the target's health (initial, healthy,
unhealthy) is ``health_from_row``: pure, pinned by the unit tests.
"""

from __future__ import annotations

import csv
import hashlib
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .controller_world import Action, Condition, ListenerRule, LoadBalancer, Target, TargetGroup

# Paths inside the balancer's container (bind mounts of the state directory).
CONFIG_DIR = "/etc/haproxy/local"
CERTS_DIR = f"{CONFIG_DIR}/certs"  # the HTTPS listeners' certificates (dataplane_tls)
RUN_DIR = "/run/threetier"
SOCKET = "admin.sock"
STATE_FILE = "server-state"


def ssl_min_version(policy: str) -> str:
    """An ALB security policy -> the lowest TLS version HAProxy accepts (the
    ELBSecurityPolicy-TLS13-1-2-* policies: TLS 1.2 and 1.3; -TLS13-1-3-*:
    1.3 only). Ciphers stay OpenSSL's defaults for those versions."""
    return "TLSv1.3" if "TLS13-1-3" in policy else "TLSv1.2"


# Seconds to open a connection to a target before trying another
# (roles/local_lb's local_lb_connect_timeout).
CONNECT_TIMEOUT = 3

_STRUCTURE = re.compile(r"^# structure ([0-9a-f]{16})$", re.MULTILINE)


# --------------------------------------------------------------------------
# Configuration


def server_name(target: Target, group_port: int) -> str:
    """The server of a target: its id, and its port when it is not the
    group's (an instance registered on two ports is two targets)."""
    return target.id if target.port == group_port else f"{target.id}_{target.port}"


def matcher_expect(matcher: str) -> str:
    """The target group's success codes as an ``http-check expect`` argument:
    "200" -> "status 200"; "200,202" or "200-299" -> an anchored regex."""
    codes: list[str] = []
    for part in matcher.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            low, high = (int(x) for x in part.split("-", 1))
            codes.extend(str(c) for c in range(low, high + 1))
        else:
            codes.append(str(int(part)))
    codes = list(dict.fromkeys(codes)) or ["200"]
    if len(codes) == 1:
        return f"status {codes[0]}"
    return "rstatus ^(" + "|".join(_compact(codes)) + ")$"


def _compact(codes: list[str]) -> list[str]:
    """Whole decades and hundreds as character classes ("2[0-9][0-9]"
    rather than a hundred alternatives), the rest as they are."""
    tens: dict[str, set[str]] = {}
    for c in codes:
        tens.setdefault(c[:2], set()).add(c[2])
    full_tens = {t for t, ones in tens.items() if len(ones) == 10}
    hundreds: dict[str, set[str]] = {}
    for t in full_tens:
        hundreds.setdefault(t[0], set()).add(t[1])
    full_hundreds = {h for h, ts in hundreds.items() if len(ts) == 10}
    out: list[str] = []
    for c in codes:
        if c[0] in full_hundreds:
            item = f"{c[0]}[0-9][0-9]"
        elif c[:2] in full_tens:
            item = f"{c[:2]}[0-9]"
        else:
            item = c
        if item not in out:
            out.append(item)
    return out


def server_keywords(group: TargetGroup, transition_interval: int) -> list[str]:
    """The check keywords of every server of a target group, for the file and
    for ``add server`` alike: interval, thresholds (rise/fall = healthy and
    unhealthy threshold counts), the check port, slow start. With a
    transition interval (local-only speed-up), a server changing state (on
    its way up or down, or down) is checked that often; the thresholds stay
    the group's."""
    hc = group.health_check
    words = [
        "check",
        "inter",
        f"{hc.interval}s",
        "rise",
        str(hc.healthy),
        "fall",
        str(hc.unhealthy),
    ]
    if transition_interval > 0:
        words += ["fastinter", f"{transition_interval}s", "downinter", f"{transition_interval}s"]
    if hc.port and hc.port != "traffic-port":
        words += ["port", hc.port]
    if group.slow_start > 0:
        words += ["slowstart", f"{group.slow_start}s"]
    # Keep idle connections to the target for the next requests, as an ALB
    # does: a server added at run time (``add server``) keeps none by default
    # in HAProxy 2.6 (idle_lim 0), so every request opened a new connection.
    words += ["pool-max-conn", "64", "pool-purge-delay", "10s"]
    return words


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _action_lines(
    action: Action | None,
    groups: Mapping[str, TargetGroup],
    ports: Mapping[str, str] | None = None,
) -> list[str]:
    if action is None:
        return ["http-request return status 503"]
    if action.kind == "forward":
        group = groups.get(action.target_group_arn)
        if group is None:
            return ["http-request return status 503"]
        return [f"default_backend {group.name}"]
    if action.kind == "redirect":
        r = dict(action.redirect)
        protocol = r.get("Protocol", "#{protocol}")
        scheme = "%[ssl_fc,iif(https,http)]" if protocol == "#{protocol}" else protocol.lower()
        port = r.get("Port", "#{port}")
        # a published balancer: the port a redirect names is the one the
        # host publishes it on (127.0.0.1:8443 for 443; local only)
        port = (ports or {}).get(port, port)
        if port == "#{port}":
            port_part = ":%[dst_port]"
        elif (scheme, port) in (("http", "80"), ("https", "443")):
            port_part = ""
        else:
            port_part = f":{port}"
        host = r.get("Host", "#{host}")
        host_part = "%[req.hdr(host),field(1,:)]" if host == "#{host}" else host
        code = r.get("StatusCode", "HTTP_301").removeprefix("HTTP_")
        path, query = r.get("Path", "/#{path}"), r.get("Query", "#{query}")
        if (path, query) == ("/#{path}", "#{query}"):
            tail = "%[capture.req.uri]"
        else:  # ALB's #{path} is the path without its leading slash
            tail = path.replace("/#{path}", "%[path]").replace("#{path}", "%[path,regsub(^/,)]")
            tail += (
                "%[url,regsub(^[^?]*,)]" if query == "#{query}" else f"?{query}" if query else ""
            )
        location = f"{scheme}://{host_part}{port_part}{tail}"
        return [f"http-request redirect location {location} code {code}"]
    if action.kind == "fixed-response":
        f = dict(action.fixed)
        line = f"http-request return status {f.get('StatusCode', '200')}"
        if f.get("MessageBody"):
            line += f" content-type {_quote(f.get('ContentType', 'text/plain'))}"
            line += f" string {_quote(f['MessageBody'])}"
        return [line]
    return ["http-request return status 503"]


# What a rule's condition reads of the request (ALB: header and host values
# compare without case, paths and methods with).
_FETCHES = {
    "path-pattern": ("path", ""),
    "host-header": ("req.hdr(host),field(1,:)", " -i"),
    "http-request-method": ("method", ""),
}


def wildcard_regex(value: str) -> str:
    """An ALB condition value (* any characters, ? one) as an anchored regex."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return f"^{body}$"


def condition_acl(condition: Condition) -> str | None:
    """One condition as an anonymous ACL (its values are the ACL's patterns,
    any of which matches; single-quoted, so HAProxy takes them as they are);
    None for a field with no local stand-in."""
    if condition.field == "http-header" and condition.header:
        fetch, flags = f"req.hdr({condition.header})", " -i"
    elif condition.field in _FETCHES:
        fetch, flags = _FETCHES[condition.field]
    else:
        return None
    if not condition.values or any("'" in v for v in condition.values):
        return None
    patterns = " ".join(f"'{wildcard_regex(v)}'" for v in condition.values)
    return f"{{ {fetch} -m reg{flags} {patterns} }}"


def _rule_lines(
    rules: Iterable[ListenerRule],
    groups: Mapping[str, TargetGroup],
    ports: Mapping[str, str] | None,
) -> tuple[list[str], list[str]]:
    """A listener's rules: the first that matches (by priority) is noted in
    txn.rule, then its action is taken on that: HAProxy runs every
    http-request line before any use_backend, so each action is keyed on the
    rule noted (and the default action on none noted). Returns the
    http-request lines and the use_backend lines."""
    noted: list[str] = []
    taken: list[str] = []
    backends: list[str] = []
    for rule in rules:
        acls = [condition_acl(c) for c in rule.conditions]
        if not rule.conditions or None in acls:
            fields = ", ".join(c.field for c in rule.conditions) or "none"
            noted.append(f"# rule {rule.priority} ({fields}): no local stand-in")
            continue
        noted.append(
            f"http-request set-var(txn.rule) int({rule.priority}) if "
            f"!{{ var(txn.rule) -m found }} {' '.join(str(a) for a in acls)}"
        )
        chosen = f"{{ var(txn.rule) -m int {rule.priority} }}"
        for line in _action_lines(rule.action, groups, ports):
            if line.startswith("default_backend "):
                backends.append(f"use_backend {line.split()[1]} if {chosen}")
            else:
                taken.append(f"{line} if {chosen}")
    return noted + taken, backends


def render_config(
    lb: LoadBalancer,
    groups: Mapping[str, TargetGroup],
    transition_interval: int,
    servers: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    certificates: Mapping[str, str] | None = None,
    published: Mapping[str, str] | None = None,
) -> str:
    """The balancer's haproxy.cfg (ported from roles/local_lb's template).

    ``servers`` (backend -> [(name, address:port)]) is only given for a
    reload: the servers that exist at that moment are written into the file,
    so the new workers have them, and the state file gives them back their
    state (weight, drain, maintenance, health). A fresh balancer starts with
    none: its targets enter through the runtime API like every later one.

    The first lines carry a digest of the structure (everything but the
    servers): the controller reloads when it differs, also after its own
    restart (it reads the digest back from the file).

    ``certificates`` (listener ARN -> the certificate's file name in
    CERTS_DIR) gives HTTPS listeners their certificate; one without stays
    out. ``published`` (listener port -> the host's port) is what a redirect
    to that port names instead."""
    certificates = certificates or {}
    structure = _body(lb, groups, transition_interval, None, certificates, published)
    digest = structure_digest(structure)
    head = (
        "# threetier local controller: HAProxy standing in for the ALB\n"
        f"# {lb.name} ({lb.arn})\n"
        f"# structure {digest}\n\n"
    )
    if servers:
        return head + _body(lb, groups, transition_interval, servers, certificates, published)
    return head + structure


def _body(
    lb: LoadBalancer,
    groups: Mapping[str, TargetGroup],
    transition_interval: int,
    servers: Mapping[str, Iterable[tuple[str, str]]] | None,
    certificates: Mapping[str, str],
    published: Mapping[str, str] | None,
) -> str:
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {RUN_DIR}/{SOCKET} mode 600 level admin",
        "    stats timeout 30s",
        f"    server-state-file {RUN_DIR}/{STATE_FILE}",
        "    maxconn 4096",
        "    user haproxy",
        "    group haproxy",
        "    # no DNS: every address is a fixed IP on a podman network",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    load-server-state-from-file global",
        f"    timeout connect {CONNECT_TIMEOUT}s",
        f"    timeout client {lb.idle_timeout}s",
        f"    timeout server {lb.idle_timeout}s",
        f"    timeout http-keep-alive {lb.idle_timeout}s",
        "    timeout http-request 10s",
        "    timeout queue 10s",
        "    # a connection refused or reset before any response byte (an instance",
        "    # that just went away) is retried once on another target, as an ALB does",
        "    retries 2",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
    ]
    for listener in lb.listeners:
        if listener.protocol == "HTTP":
            bind, proto = f"    bind :{listener.port}", "http"
        elif listener.protocol == "HTTPS" and listener.arn in certificates:
            bind = (
                f"    bind :{listener.port} ssl crt {CERTS_DIR}/{certificates[listener.arn]}"
                f" ssl-min-ver {ssl_min_version(listener.ssl_policy)} alpn http/1.1"
            )
            proto = "https"
        else:
            why = "no certificate here yet" if listener.protocol == "HTTPS" else "no local stand-in"
            lines += ["", f"# listener {listener.port}/{listener.protocol}: {why}"]
            continue
        lines += [
            "",
            f"frontend listener-{listener.port}",
            bind,
            "    option forwardfor",
            f"    http-request set-header X-Forwarded-Proto {proto}",
            f"    http-request set-header X-Forwarded-Port {listener.port}",
        ]
        ruled, backends = _rule_lines(listener.rules, groups, published)
        default = _action_lines(listener.action, groups, published)
        if any(x.startswith("http-request set-var") for x in ruled):
            # the default action: when no rule matched
            default = [
                x if x.startswith("default_backend") else f"{x} if !{{ var(txn.rule) -m found }}"
                for x in default
            ]
        default_http = [x for x in default if x.startswith("http-request")]
        default_rest = [x for x in default if not x.startswith("http-request")]
        lines += [f"    {x}" for x in [*ruled, *default_http, *backends, *default_rest]]
    for group in backends_of(lb, groups):
        hc = group.health_check
        keywords = " ".join(server_keywords(group, transition_interval))
        lines += [
            "",
            f"backend {group.name}",
            f"    # target group {group.arn}",
            f"    # server keywords: {keywords}",
            "    balance roundrobin",
            f"    option httpchk GET {hc.path}",
            f"    http-check expect {matcher_expect(hc.matcher)}",
            f"    timeout check {hc.timeout}s",
        ]
        for name, address in (servers or {}).get(group.name, ()):
            lines.append(f"    server {name} {address} {keywords}")
    return "\n".join(lines) + "\n"


def structure_digest(structure: str) -> str:
    """The digest a configuration's first lines carry (``# structure ...``)."""
    return hashlib.sha256(structure.encode()).hexdigest()[:16]


def structure_of(text: str) -> str:
    """The structure digest a configuration file was written with ("" if none)."""
    m = _STRUCTURE.search(text)
    return m.group(1) if m else ""


def backends_of(lb: LoadBalancer, groups: Mapping[str, TargetGroup]) -> list[TargetGroup]:
    """The target groups the balancer's HTTP and HTTPS listeners forward to
    (its backends; an external balancer with a certificate forwards on 443
    only, its 80 answers the redirect)."""
    seen: dict[str, TargetGroup] = {}
    for x in lb.listeners:
        if x.protocol not in ("HTTP", "HTTPS"):
            continue
        for action in (x.action, *(r.action for r in x.rules)):
            if action is not None and action.kind == "forward":
                g = groups.get(action.target_group_arn)
                if g is not None:
                    seen.setdefault(g.arn, g)
    return list(seen.values())


# --------------------------------------------------------------------------
# Rows of `show stat` and what they mean for a target's health


@dataclass(frozen=True)
class Row:
    backend: str
    server: str
    status: str  # UP, UP 1/2, DOWN, DOWN 1/2, NOLB, MAINT, DRAIN, no check
    uweight: int
    sessions: int
    check_status: str  # INI, L4OK, L4CON, L4TOUT, L7OK, L7STS, L7TOUT, ...
    check_code: str
    check_desc: str
    address: str

    @property
    def kind(self) -> str:
        """The status's first word: UP, DOWN, MAINT, DRAIN, NOLB."""
        return self.status.split(" ", 1)[0] if self.status else ""


def parse_stat(text: str) -> dict[str, dict[str, Row]]:
    """``show stat`` CSV -> backend -> server -> Row (every backend, also
    one without servers; frontends left out)."""
    out: dict[str, dict[str, Row]] = {}
    for r in csv.DictReader(text.lstrip("# ").splitlines()):
        if not r.get("pxname") or r.get("svname") in ("FRONTEND", None):
            continue
        if r["svname"] == "BACKEND":
            out.setdefault(r["pxname"], {})  # a backend without servers is still there
            continue
        out.setdefault(r["pxname"], {})[r["svname"]] = Row(
            backend=r["pxname"],
            server=r["svname"],
            status=r.get("status", ""),
            uweight=int(r.get("uweight") or r.get("weight") or 0),
            sessions=int(r.get("scur") or 0),
            check_status=(r.get("check_status") or "").lstrip("* "),
            check_code=r.get("check_code", ""),
            check_desc=r.get("check_desc", ""),
            address=r.get("addr", ""),
        )
    return out


@dataclass(frozen=True)
class Health:
    """A target's health as the emulator takes it."""

    state: str  # initial | healthy | unhealthy
    reason: str = ""
    description: str = ""


@dataclass
class ServerMemory:
    """What one row cannot say: whether the server was ever UP since it
    entered (or was found unhealthy before that), and since when its checks
    fail."""

    ever_up: bool = False
    unhealthy: bool = False
    failing_since: float | None = None


INITIAL = Health("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")
HEALTHY = Health("healthy")

_PASSED = frozenset({"", "INI", "L4OK", "L6OK", "L7OK", "L7OKC", "UNK"})


def failure(row: Row) -> Health:
    """Unhealthy, with the reason an ALB would give for the last check."""
    if row.check_status == "L7STS":
        code = row.check_code or "?"
        return Health(
            "unhealthy",
            "Target.ResponseCodeMismatch",
            f"Health checks failed with these codes: [{code}]",
        )
    if row.check_status in ("L4TOUT", "L6TOUT", "L7TOUT"):
        return Health("unhealthy", "Target.Timeout", "Request timed out")
    return Health(
        "unhealthy",
        "Target.FailedHealthChecks",
        "Health checks failed" + (f" ({row.check_desc})" if row.check_desc else ""),
    )


def health_from_row(row: Row, memory: ServerMemory, group: TargetGroup, now: float) -> Health:
    """The target's health from its server's row (and the memory, updated).

    - initial: registered, not UP yet (it gets no request);
    - healthy: UP (also UP and failing, until the unhealthy threshold);
    - unhealthy: DOWN after having been UP; or never UP and failing for as
      long as the target group's unhealthy threshold of checks takes at its
      interval (an ALB counts checks; the row shows only the last one, so the
      time is counted). The group's interval, not the transition interval:
      that one only speeds a target's way up, and an instance still booting
      must not look unhealthy sooner than on AWS (a refresh would fail on it).
      Once unhealthy, it stays so until UP.

    After a controller restart, a DOWN server with its weight given back was
    UP before (the weight is only given back once UP)."""
    kind = row.kind
    if kind in ("UP", "NOLB", "DRAIN"):
        memory.ever_up = True
        memory.unhealthy = False
        memory.failing_since = None
        return HEALTHY
    if kind != "DOWN":
        return INITIAL
    if row.uweight > 0:
        memory.ever_up = True
    if memory.ever_up or memory.unhealthy:
        return failure(row)
    if row.check_status in _PASSED:
        memory.failing_since = None
        return INITIAL
    if memory.failing_since is None:
        memory.failing_since = now
    hc = group.health_check
    if now - memory.failing_since >= max(1, hc.unhealthy - 1) * hc.interval:
        memory.unhealthy = True
        return failure(row)
    return INITIAL


# --------------------------------------------------------------------------
# The runtime API


class HaproxyRefusedError(RuntimeError):
    """HAProxy refused a runtime command."""


@dataclass
class Runtime:
    """The admin socket of one balancer (a unix socket on the host's side of
    the bind mount)."""

    path: Path
    timeout: float = 3.0

    def ask(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            s.connect(str(self.path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def rows(self) -> dict[str, dict[str, Row]]:
        return parse_stat(self.ask("show stat"))

    def _expect_silence(self, command: str) -> None:
        answer = self.ask(command).strip()
        if answer:
            raise HaproxyRefusedError(f"{command}: {answer}")

    def add(self, backend: str, server: str, address: str, keywords: list[str]) -> None:
        """A new server, in maintenance (as HAProxy creates them), its health
        check on."""
        command = " ".join(["add server", f"{backend}/{server}", address, *keywords])
        answer = self.ask(command).strip()
        if "New server registered" not in answer:
            raise HaproxyRefusedError(f"{command}: {answer}")
        if "check" in keywords:
            self._expect_silence(f"enable health {backend}/{server}")

    def enter(self, backend: str, server: str) -> None:
        """Out of maintenance the way a target group takes a target: weight 0
        and health forced down, so no request before `rise` checks passed;
        ``give_weight`` once it is UP."""
        b_s = f"{backend}/{server}"
        self._expect_silence(
            f"set weight {b_s} 0; set server {b_s} state ready; set server {b_s} health down"
        )

    def ready(self, backend: str, server: str) -> None:
        self._expect_silence(f"set server {backend}/{server} state ready")

    def give_weight(self, backend: str, server: str) -> None:
        self._expect_silence(f"set weight {backend}/{server} 100%")

    def drain(self, backend: str, server: str) -> None:
        self._expect_silence(f"set server {backend}/{server} state drain")

    def remove(self, backend: str, server: str) -> bool:
        """Maintenance, then delete. HAProxy refuses while connections are
        attached: they are shut (as an ALB closes them when the
        deregistration delay ends) and the delete tried once more. True when
        the server is gone."""
        b_s = f"{backend}/{server}"
        self.ask(f"set server {b_s} state maint")
        answer = self.ask(f"del server {b_s}").strip()
        if "Server deleted" in answer or "No such server" in answer:
            return True
        self.ask(f"shutdown sessions server {b_s}")
        answer = self.ask(f"del server {b_s}").strip()
        return "Server deleted" in answer or "No such server" in answer

    def save_state(self, path: Path) -> None:
        """The servers' state for the next workers (before a reload)."""
        text = self.ask("show servers state")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def render_aws_api(addresses: list[str], port: int, sources: list[str], target: str) -> str:
    """LOCAL ONLY: the HAProxy configuration that passes the emulator's port
    on the given (gateway) addresses to the emulator, for the given source
    CIDRs only (controller._aws_api says why). ``transparent`` binds an
    address the host does not have yet."""
    binds = "\n".join(f"    bind {a}:{port} transparent" for a in addresses)
    return f"""# written by the local controller: LOCAL ONLY, nothing of it exists on AWS
# The AWS APIs as the VPC sees them: the emulator (on the host's 127.0.0.1,
# which containers cannot reach) on every subnet's gateway address.
global
    log stdout format raw local0 notice
    maxconn 512

defaults
    mode tcp
    log global
    timeout connect 3s
    timeout client 60s
    timeout server 60s

frontend aws_api
{binds}
    tcp-request connection reject unless {{ src {" ".join(sources)} }}
    default_backend emulator

backend emulator
    server emulator {target}
"""
