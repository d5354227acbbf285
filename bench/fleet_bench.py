"""The local fleet's figures (not a test: it prints them).

1. The cost of the tiers: requests/s and p50/p99 of listing tasks through the
   whole stack (external HAProxy -> nginx -> internal HAProxy -> gunicorn ->
   PostgreSQL) beside the same gunicorn hit directly. The same small client
   runs inside the fleet's containers (a web instance for the stack, an app
   instance for gunicorn on 127.0.0.1), so only the path differs. Beside it,
   where the whole stack's time and CPU go: each hop's CPU per request (its
   containers' cpuacct counters: cgroup v1 on this machine; the client's own
   CPU is in the first web instance's) and each balancer's view of the hop
   behind it (HAProxy's averages of its last 1,024 requests: connect,
   response and total time, and how many requests opened a new connection
   rather than reusing one), then each hop's own time per request from what
   each logs of the same requests: nginx's request_time and upstream time
   (its access log), taskboard's duration_ms (its journal), PostgreSQL's
   active time (pg_stat_database), each less the next hop's.
2. With --rollout VERSION: the wall time of a rolling release
   (playbooks/release.yml) beside its lower bound,
   batches x (drain + restart + healthy threshold x check interval), and
   where the time went, task by task (profile_tasks' timestamps): the
   balancer's waits, the release's own work (wheel, dependency download,
   virtual environment, pip install and checks, the page's copy), the
   restarts and gates, and the rest, Ansible's own (a module shipped and run
   per task and host), each phase's wall time beside them.
3. With --immutable VERSION: the bake of each tier (playbooks/images.yml, one
   tier at a time: a real podman bake when the release's image is missing)
   and the immutable rollout of each tier (playbooks/release_immutable.yml:
   an instance refresh of the emulator's group, which the local controller
   follows with containers), beside its lower bound, batches x (warmup +
   healthy threshold x check interval), and the refresh's own time (its
   StartTime to EndTime) against the playbook's: the rest is Ansible's.

Needs the fleet (make up); without it, it says so and exits 0.

    python bench/fleet_bench.py [--requests N] [--seconds S] [--concurrency C]
                                [--rollout VERSION] [--immutable VERSION]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import yaml

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
# A target changing state is checked every second by the local balancers
# (HAProxy's fastinter/downinter: the controller's --transition-interval,
# its default as scripts/moto.sh starts it) until the thresholds decide.
TRANSITION_INTERVAL = 1
ENV = {
    **os.environ,
    "CONTAINERS_CONF": str(REPO / "scripts" / "containers.conf"),
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_CALLBACKS_ENABLED": os.environ.get("ANSIBLE_CALLBACKS_ENABLED")
    or "ansible.posix.timer",
    "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
}

# Runs inside a container with the image's python3: a bounded closed loop of
# C keep-alive clients, at most N requests and S seconds in all.
# With a CA (PEM text) it speaks HTTPS and verifies the balancer's chain
# against that CA; not the name: it dials the balancer's VPC address, which
# no certificate names. A header ("Name: value") goes with every request:
# the origin check's, which the external balancer asks for when CloudFront
# is in front.
CLIENT = r"""
import http.client, json, ssl, sys, threading, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n, secs, conc = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
cadata = sys.argv[7] if len(sys.argv) > 7 else ""
header = sys.argv[8].split(": ", 1) if len(sys.argv) > 8 else []
headers = dict([header]) if header else {}
lat, errors, lock, count = [], [0], threading.Lock(), [0]
deadline = time.monotonic() + secs
def connect():
    if not cadata:
        return http.client.HTTPConnection(host, port, timeout=10)
    ctx = ssl.create_default_context(cadata=cadata)
    ctx.check_hostname = False
    return http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
def worker():
    c = connect()
    while time.monotonic() < deadline:
        with lock:
            if count[0] >= n:
                return
            count[0] += 1
        t = time.monotonic()
        try:
            c.request("GET", path, headers=headers); r = c.getresponse(); r.read()
            ok = r.status == 200
        except OSError:
            ok = False; c.close(); c = connect()
        with lock:
            (lat.append(time.monotonic() - t) if ok else None)
            errors[0] += 0 if ok else 1
start = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]; [t.join() for t in ts]
took = time.monotonic() - start
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(json.dumps({"requests": len(lat), "errors": errors[0], "rps": len(lat) / took,
                  "p50": q(0.5), "p99": q(0.99)}))
"""


def podman(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def emulator(service: str):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto's documented dummy)
    )


def origin_header() -> str:
    """The origin check's header ("Name: value"; "" without CloudFront in
    front): requests past CloudFront must carry it (aws_load_balancers)."""
    try:
        secret = emulator("secretsmanager").get_secret_value(SecretId="threetier/local/cdn-origin")
    except emulator("secretsmanager").exceptions.ResourceNotFoundException:
        return ""
    stored = json.loads(secret["SecretString"])
    return f"{stored['header']}: {stored['value']}"


def names(tier: str) -> list[str]:
    """The tier's running instances (each a container named by its id)."""
    try:
        found = emulator("ec2").describe_instances(
            Filters=[
                {"Name": "tag:Environment", "Values": ["local"]},
                {"Name": "tag:Tier", "Values": [tier]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )
    except Exception:  # no emulator answering: the fleet is not up
        return []
    return sorted(i["InstanceId"] for r in found["Reservations"] for i in r["Instances"])


def fleet_up() -> bool:
    out = podman("ps", "--filter", "label=fleet=local", "--format", "{{.Names}}").stdout.split()
    return "tt-local-lb-ext" in out and bool(names("web")) and bool(names("app"))


def address(container: str) -> str:
    info = json.loads(podman("container", "inspect", container).stdout)[0]
    return next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]


def measure(container: str, host: str, port: int, args, ca: str = "", header: str = "") -> dict:
    path = "/api/tasks?limit=20"
    r = podman(
        "exec", container, "python3", "-c", CLIENT, host, str(port), path,
        str(args.requests), str(args.seconds), str(args.concurrency),
        *([ca] if ca or header else []), *([header] if header else []),
        timeout=int(args.seconds) + 60,
    )  # fmt: skip
    if r.returncode != 0:
        sys.exit(f"fleet_bench: client in {container} failed: {r.stderr[-500:]}")
    return json.loads(r.stdout)


def cpu_ns(container: str) -> int:
    """The container's CPU time so far (cgroup v1's cpuacct, from the host)."""
    path = podman("inspect", "--format", "{{.State.CgroupPath}}", container).stdout.strip()
    usage = Path("/sys/fs/cgroup/cpuacct") / path.lstrip("/") / "cpuacct.usage"
    return int(usage.read_text()) if usage.is_file() else 0


def backends(balancer: str) -> dict[str, dict[str, int]]:
    """Each backend of a local balancer, as its admin socket's `show stat`
    counts it: requests (stot), new connections (connect), reused ones
    (reuse), and the averages of the last 1,024 requests in ms."""
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    from localaws.dataplane_haproxy import Runtime

    sock = REPO / ".local" / "controller" / "lb" / balancer / "run" / "admin.sock"
    text = Runtime(sock).ask("show stat")
    keys = ("stot", "connect", "reuse", "qtime", "ctime", "rtime", "ttime")
    return {
        r["pxname"]: {k: int(r.get(k) or 0) for k in keys}
        for r in csv.DictReader(text.lstrip("# ").splitlines())
        if r.get("svname") == "BACKEND"
    }


NGINX_LOG = "/var/log/nginx/access.log"  # nginx_web_access_log's default
PATH_LISTED = "/api/tasks"


def log_lines(container: str) -> int:
    """How many lines nginx's access log of a web instance has so far."""
    out = podman("exec", container, "wc", "-l", NGINX_LOG).stdout.split()
    return int(out[0]) if out and out[0].isdigit() else 0


def nginx_times(marks: dict[str, int]) -> list[tuple[float, float]]:
    """(request_time, upstream_response_time) in ms of every listing nginx
    logged since the marks (line counts per web instance): nginx's own view
    of a request and of the internal balancer's answer."""
    times = []
    for container, start in marks.items():
        text = podman("exec", container, "tail", "-n", f"+{start + 1}", NGINX_LOG).stdout
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            upstream = str(entry.get("upstream_response_time", "")).split(",")[-1].strip()
            if not entry.get("uri", "").startswith(PATH_LISTED) or not re.fullmatch(
                r"[0-9.]+", upstream
            ):
                continue
            times.append((float(entry["request_time"]) * 1000, float(upstream) * 1000))
    return times


def app_times(containers: list[str], since: float) -> list[float]:
    """duration_ms of every listing taskboard logged since `since` (epoch s):
    the app's own time, its database queries included."""
    times = []
    for container in containers:
        text = podman(
            "exec", container, "journalctl", "--no-pager", "-o", "cat", "-u", "taskboard",
            f"--since=@{since:.0f}",
        ).stdout  # fmt: skip
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "request" and entry.get("path") == PATH_LISTED:
                times.append(float(entry["duration_ms"]))
    return times


def database_active_ms() -> float:
    """PostgreSQL's time spent executing statements, all databases, so far
    (pg_stat_database.active_time, ms)."""
    out = podman(
        "exec", "tt-local-db", "runuser", "-u", "postgres", "--", "psql", "-Atc",
        "select coalesce(sum(active_time), 0) from pg_stat_database",
    ).stdout.strip()  # fmt: skip
    return float(out) if re.fullmatch(r"[0-9.]+", out) else float("nan")


# A session's statistics reach pg_stat_database at most once a second while
# it works and within 10 s once idle (PostgreSQL 15's PGSTAT_IDLE_INTERVAL)
STATS_SETTLE = 11


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def ext_listener_ports() -> set[int]:
    """The ports of the external balancer's listeners, in the emulator."""
    elb = emulator("elbv2")
    (lb,) = elb.describe_load_balancers(Names=["threetier-local-ext"])["LoadBalancers"]
    return {
        x["Port"]
        for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }


def hops() -> dict[str, list[str]]:
    return {
        "external balancer": ["tt-local-lb-ext"],
        "web instances (nginx; the client too)": names("web"),
        "internal balancer": ["tt-local-lb-int"],
        "app instances (gunicorn)": names("app"),
        "database (PostgreSQL)": ["tt-local-db"],
    }


def breakdown_of_the_stack(args) -> tuple[dict, dict[str, float], dict[str, dict], dict]:
    """The whole stack's run, with each hop's CPU, each balancer's counters
    and each hop's own log of its time around it."""
    parts = hops()
    marks = {c: log_lines(c) for c in parts["web instances (nginx; the client too)"]}
    since = time.time() - 1
    db0 = database_active_ms()
    cpu0 = {hop: sum(cpu_ns(c) for c in cs) for hop, cs in parts.items()}
    lb0 = {lb: backends(lb) for lb in ("tt-local-lb-ext", "tt-local-lb-int")}
    # the site's listener: HTTPS on 443 when the balancer has it (make up's
    # environment; port 80 then redirects), plain HTTP on 80 otherwise
    ca = REPO / ".local" / "ca" / "ca.crt"
    https = ext_listener_ports() >= {443} and ca.is_file()
    stack = measure(
        names("web")[0], address("tt-local-lb-ext"), 443 if https else 80, args,
        ca.read_text() if https else "", origin_header(),
    )  # fmt: skip
    stack["scheme"] = "https" if https else "http"
    cpu = {hop: sum(cpu_ns(c) for c in cs) - cpu0[hop] for hop, cs in parts.items()}
    time.sleep(STATS_SETTLE)
    logged = {
        "nginx": nginx_times(marks),
        "app": app_times(parts["app instances (gunicorn)"], since),
        "db_ms": database_active_ms() - db0,
    }
    seen = {}
    for lb, before in lb0.items():
        for name, after in backends(lb).items():
            was = before.get(name, dict.fromkeys(after, 0))
            seen[f"{lb} -> {name}"] = {
                **{k: after[k] - was[k] for k in ("stot", "connect", "reuse")},
                **{k: after[k] for k in ("qtime", "ctime", "rtime", "ttime")},
            }
    return stack, cpu, seen, logged


def tiers(args) -> None:
    stack, cpu, seen, logged = breakdown_of_the_stack(args)
    direct = measure(names("app")[0], "127.0.0.1", 5000, args)
    print(
        f"GET /api/tasks?limit=20, {args.concurrency} clients,"
        f" <= {args.requests} requests / {args.seconds:.0f} s"
    )
    print(f"{'path':<48} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, m in (
        (f"whole stack, {stack['scheme']} (ext LB > nginx > int LB > app)", stack),
        ("gunicorn directly (one instance)", direct),
    ):
        print(f"{name:<48} {m['rps']:>8.1f} {m['p50']:>8.1f} {m['p99']:>8.1f} {m['errors']:>7}")
    print(
        f"cost of the tiers: throughput x{direct['rps'] / stack['rps']:.2f},"
        f" p99 x{stack['p99'] / direct['p99']:.2f}"
    )
    served = max(1, stack["requests"] + stack["errors"])
    print(f"where the whole stack's {served} requests went:")
    print(f"  {'hop':<40} {'CPU ms/request':>15}")
    for hop, ns in cpu.items():
        print(f"  {hop:<40} {ns / 1e6 / served:>15.2f}")
    print(
        f"  {'balancer -> the hop behind it':<40} {'requests':>9} {'new conn':>9} {'reused':>7}"
        f" {'connect':>8} {'response':>9} {'total':>6} (ms, last 1,024)"
    )
    for name, c in seen.items():
        if c["stot"] <= 0:
            continue
        print(
            f"  {name:<40} {c['stot']:>9} {c['connect']:>9} {c['reuse']:>7}"
            f" {c['ctime']:>8} {c['rtime']:>9} {c['ttime']:>6}"
        )
    own_time(stack, seen, logged)


def own_time(stack: dict, seen: dict[str, dict], logged: dict) -> None:
    """Each hop's own time per request, from what each one logs of its
    requests (means subtract; p99s do not, so they are shown as logged)."""
    nginx, app = logged["nginx"], logged["app"]
    if not nginx or not app:
        print(f"  (own times: {len(nginx)} nginx and {len(app)} taskboard log lines; skipped)")
        return
    served = max(1, stack["requests"] + stack["errors"])
    ext = next((c for n, c in seen.items() if n.startswith("tt-local-lb-ext") and c["stot"]), None)
    # HAProxy's average of its last 1,024 requests, in whole ms: its own time
    # is only known within a millisecond or so
    ext_total = float(ext["ttime"]) if ext else float("nan")
    total, upstream = [t for t, _ in nginx], [u for _, u in nginx]
    db_ms = logged["db_ms"] / served
    logs = [
        ("external balancer (its total time)", ext_total, ""),
        ("nginx (request_time)", mean(total), f"{p99(total):.2f}"),
        ("internal balancer + app (nginx's upstream time)", mean(upstream), f"{p99(upstream):.2f}"),
        ("taskboard (its duration_ms)", mean(app), f"{p99(app):.2f}"),
        ("PostgreSQL (active time / request)", db_ms, ""),
    ]
    print(f"  {'each hop, as it logs the request':<48} {'mean ms':>8} {'p99 ms':>8}")
    for name, avg, tail in logs:
        print(f"  {name:<48} {avg:>8.2f} {tail:>8}")
    own = {
        "external balancer": ext_total - mean(total),
        "nginx": mean(total) - mean(upstream),
        # (taskboard's time starts when a worker takes the request: a request
        # waiting in gunicorn's backlog for a free worker counts here)
        "internal balancer and the wait for a gunicorn worker": mean(upstream) - mean(app),
        "taskboard (without its queries)": mean(app) - db_ms,
        "PostgreSQL": db_ms,
    }
    print("  each hop's own time, mean ms per request (its time less the next hop's):")
    print("    " + ", ".join(f"{name} {ms:.2f}" for name, ms in own.items()))


def playbook(*args: str, profile: bool = False) -> tuple[float, int, str]:
    """Wall time, exit status and output of one ansible-playbook run against
    the fleet (with profile, each task's header carries its timestamp)."""
    env = {**ENV, "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")}
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    t0 = time.monotonic()
    r = subprocess.run(
        ["ansible-playbook", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        print(f"  ansible-playbook {' '.join(args)} exited {r.returncode}: {r.stdout[-1500:]}")
    return time.monotonic() - t0, r.returncode, r.stdout


# What a rolling release's tasks are, by name (playbooks/release.yml and the
# roles it runs): the balancer's waits, the release's own work, the restart
# and the gates. Every other task is counted as Ansible's own.
TASK_KINDS = {
    "balancer waits (drain, healthy)": ("Deregister the target", "Register the target and wait"),
    "the release's own work": (
        "Build the wheel",
        "Build the dependency bundles",
        "Unpack the release bundle",
        "Create the release's virtual environment",
        "Install the release into it",
        "Check the installed release",
        "Check the release's dependencies",
        "Unpack the page",
        "Copy the page into its release directory",
    ),
    "restarts and gates": ("Restart taskboard", "Wait for the service", "Gate on"),
}
_STAMP = re.compile(
    r"^\w+day \d+ \w+ \d{4}\s+[\d:]+ \+\d{4} \((\d+):(\d+):([\d.]+)\)\s+(\d+):(\d+):([\d.]+)"
)
_HEADER = re.compile(r"^(PLAY|TASK|RUNNING HANDLER) \[(.*?)\] \*")


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def breakdown(output: str) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Seconds per kind of task, and each play's wall time. profile_tasks
    prints a line as each task starts, carrying the time since the run began
    and how long the task before it took; the output shows a task's header
    only with its first result (after that line), and never for a task that
    every host skipped (its few hundredths go to the task shown before it)."""
    kinds = dict.fromkeys([*TASK_KINDS, "Ansible's own (the rest)"], 0.0)
    starts: list[tuple[str, float | None]] = []
    task, elapsed = "", 0.0
    for line in output.splitlines():
        h = _HEADER.match(line)
        if h and h.group(1) == "PLAY":
            starts.append((h.group(2), None))
        elif h:
            task = h.group(2)
        m = _STAMP.match(line)
        if not m:
            continue
        took, elapsed = _seconds(*m.groups()[:3]), _seconds(*m.groups()[3:])
        # a play starts with its first task (the line after its header)
        if starts and starts[-1][1] is None:
            starts[-1] = (starts[-1][0], elapsed)
        label = next((k for k, names in TASK_KINDS.items() if any(n in task for n in names)), None)
        kinds[label or "Ansible's own (the rest)"] += took
    begun = [(name, at) for name, at in starts if at is not None]
    ends = [at for _, at in begun[1:]] + [elapsed]
    plays = [(name, end - at) for (name, at), end in zip(begun, ends, strict=True)]
    return kinds, plays


def rollout(version: str) -> None:
    apps, webs = names("app"), names("web")
    took, rc, output = playbook(
        "playbooks/release.yml", "-e", f"release_version={version}", profile=True
    )
    # the target groups' numbers of the local inventory (HAProxy follows them)
    lb = yaml.safe_load((REPO / "inventories/local/group_vars/all/load_balancers.yml").read_text())
    # a target coming back is checked every transition interval (HAProxy's
    # fastinter, local only) until it passed the healthy threshold
    interval = TRANSITION_INTERVAL
    healthy = lb["aws_load_balancers_healthy_threshold"]
    # draining ends when the target is idle (about 1 s under this load);
    # gunicorn's restart to its first answer about 5 s; the page switch 0
    drain_observed, restart = 1, 5
    app_batch = drain_observed + restart + healthy * interval
    web_batch = drain_observed + healthy * interval
    bound = len(apps) * app_batch + len(webs) * web_batch
    print(
        f"rollout of {version} over {len(apps)} app + {len(webs)} web instances (serial 1):"
        f" {took:.0f} s, exit {rc}"
    )
    print(
        f"lower bound: {len(apps)} app batches x ({drain_observed} s drain + {restart} s restart"
        f" + {healthy} x {interval} s healthy) + {len(webs)} web batches x ({drain_observed} s"
        f" + {healthy} x {interval} s) = {bound} s; ratio {took / bound:.2f}"
    )
    kinds, plays = breakdown(output)
    print("where the time went (task by task):")
    for kind, seconds in kinds.items():
        print(f"  {kind:<36} {seconds:6.1f} s")
    own = kinds["the release's own work"]
    print(
        f"  with the release's own work in the bound: {bound + own:.0f} s;"
        f" ratio {took / (bound + own):.2f}"
    )
    print("each play:")
    for name, seconds in plays:
        print(f"  {seconds:6.1f} s  {name}")


def last_refresh(tier: str) -> dict:
    found = emulator("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName=f"threetier-local-{tier}"
    )["InstanceRefreshes"]
    return found[0] if found else {}


def immutable(version: str) -> None:
    counts = {tier: len(names(tier)) for tier in ("app", "web")}
    auto = yaml.safe_load((REPO / "inventories/local/group_vars/all/autoscaling.yml").read_text())
    lb = yaml.safe_load((REPO / "inventories/local/group_vars/all/load_balancers.yml").read_text())
    warmup = auto["aws_fleet_replace_instance_warmup"]
    healthy = lb["aws_load_balancers_healthy_threshold"]
    print(
        f"immutable release of {version}"
        f" ({counts['app']} app + {counts['web']} web instances, batch 1)"
    )
    for tier in ("web", "app"):
        baked = podman("image", "exists", f"localhost/threetier-{tier}:{version}").returncode == 0
        took, rc, _ = playbook(
            "playbooks/images.yml", "-e", f"threetier_release={version}",
            "-e", f'{{"images_tiers": ["{tier}"]}}', "-e", "images_prune=false",
        )  # fmt: skip
        what = "reused (image present)" if baked else "baked on a podman builder"
        print(f"  bake {tier:<4} {took:6.0f} s  exit {rc}  {what}")
    for tier in ("app", "web"):
        took, rc, _ = playbook(
            "playbooks/release_immutable.yml",
            "-e", f"release_tier={tier}", "-e", f"release_version={version}",
        )  # fmt: skip
        refresh = last_refresh(tier)
        own = (
            (refresh["EndTime"] - refresh["StartTime"]).total_seconds()
            if refresh.get("EndTime") and refresh.get("StartTime")
            else float("nan")
        )
        batches = counts[tier]  # batch 1: one new instance, then one old one goes
        bound = batches * (warmup + healthy * TRANSITION_INTERVAL)
        print(
            f"  roll {tier:<4} {took:6.0f} s  exit {rc}"
            f"  instance refresh {refresh.get('Status', '?')} in {own:.0f} s"
            f" (Ansible's own: {took - own:.0f} s); lower bound {batches} batches x"
            f" ({warmup} s warmup + {healthy} x {TRANSITION_INTERVAL} s healthy) = {bound} s;"
            f" ratio {took / bound:.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rollout", metavar="VERSION")
    ap.add_argument("--immutable", metavar="VERSION")
    args = ap.parse_args()
    if not fleet_up():
        print("fleet_bench: the local fleet is not up (make up); nothing measured")
        return 0
    tiers(args)
    if args.rollout:
        rollout(args.rollout)
    if args.immutable:
        immutable(args.immutable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
