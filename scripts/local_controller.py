"""The local data plane's controller (docs/local-data-plane.md, "The controller").

Makes podman containers follow what the emulator (moto server with
scripts/localaws) says: subnets as podman networks, instances as systemd
containers, ALBs as HAProxy containers, security groups as nftables tables,
VPC DNS as a block of each instance's /etc/hosts; and reports back what only
a real host knows (a dead instance, a failing health check).

    .venv/bin/python scripts/local_controller.py            # a pass a second, until SIGTERM
    .venv/bin/python scripts/local_controller.py --once     # one pass; exit 1 if a step failed

scripts/moto.sh starts it beside the emulator (log: .local/controller.log).
SIGTERM or SIGINT: the pass under way finishes, then it exits 0; the
containers stay (they are the data plane; `make down` removes them).
Runs as root (podman, nsenter, iptables). Standard library and boto3 only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Make podman containers follow the local AWS emulator."
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566",
        help="the emulator (default: $AWS_ENDPOINT_URL or http://127.0.0.1:4566)",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--name-prefix",
        default="threetier-local-",
        help="the environment's resource-name prefix, stripped from names",
    )
    parser.add_argument(
        "--container-prefix",
        default="tt-local-",
        help="prefix of the networks and balancer containers (and the owner label)",
    )
    parser.add_argument(
        "--publish-port",
        type=int,
        default=_env_int("THREETIER_LOCAL_PORT", 8080),
        help="127.0.0.1 port of the internet-facing ALB's port 80 "
        "(default: $THREETIER_LOCAL_PORT or 8080)",
    )
    parser.add_argument(
        "--publish-tls-port",
        type=int,
        default=_env_int("THREETIER_LOCAL_TLS_PORT", 8443),
        help="127.0.0.1 port of the internet-facing ALB's port 443, when it has an HTTPS "
        "listener (default: $THREETIER_LOCAL_TLS_PORT or 8443)",
    )
    parser.add_argument(
        "--cdn-port",
        type=int,
        default=_env_int("THREETIER_LOCAL_CDN_PORT", 9080),
        help="127.0.0.1 port of CloudFront's stand-in, plain HTTP (the redirect) "
        "(default: $THREETIER_LOCAL_CDN_PORT or 9080)",
    )
    parser.add_argument(
        "--cdn-tls-port",
        type=int,
        default=_env_int("THREETIER_LOCAL_CDN_TLS_PORT", 9443),
        help="127.0.0.1 port of CloudFront's stand-in, HTTPS: the site's URL with CloudFront "
        "(default: $THREETIER_LOCAL_CDN_TLS_PORT or 9443)",
    )
    parser.add_argument(
        "--ca-dir",
        type=Path,
        default=Path(".local/ca"),
        help="the local CA (ca.crt, ca.key) that issues the HTTPS listeners' certificates",
    )
    parser.add_argument("--lb-image", default="localhost/threetier-lb:bookworm")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".local/controller"),
        help="balancer configurations and admin sockets",
    )
    # Half a second: a registered target is seen (and a drained one reported)
    # that much sooner, for a few percent of a core beside the emulator.
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between passes")
    parser.add_argument(
        "--transition-interval",
        type=int,
        default=1,
        help="HAProxy fastinter/downinter of a target changing state (local-only "
        "speed-up; thresholds unchanged); 0: off",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit 0 (or 1)")
    return parser.parse_args(argv)


# In the User-Agent of every call of the controller's to the emulator.
USER_AGENT = "threetier-local-controller"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # moto's dummy credentials (never real ones: this talks to the emulator)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
    # podman needs the kit's settings on this kind of host (runc, ulimits)
    os.environ.setdefault("CONTAINERS_CONF", str(SCRIPTS / "containers.conf"))
    sys.path.insert(0, str(SCRIPTS))

    import boto3
    from botocore.config import Config
    from localaws.controller import Controller, Options, run

    config = Config(
        connect_timeout=3,
        read_timeout=15,
        retries={"max_attempts": 2, "mode": "standard"},
        # its calls are told from the operator's in the emulator's recording
        # (tests/recorder.py), as EC2's own are in CloudTrail
        user_agent_extra=USER_AGENT,
    )

    def client(service: str, region: str = args.region) -> Any:  # typed dynamically
        return boto3.client(service, endpoint_url=args.endpoint, region_name=region, config=config)

    # CloudFront, its certificates (ACM) and Route 53 live in us-east-1
    edge = "us-east-1"

    options = Options(
        endpoint=args.endpoint,
        region=args.region,
        name_prefix=args.name_prefix,
        container_prefix=args.container_prefix,
        publish_port=args.publish_port,
        publish_tls_port=args.publish_tls_port,
        cdn_port=args.cdn_port,
        cdn_tls_port=args.cdn_tls_port,
        ca_dir=args.ca_dir,
        lb_image=args.lb_image,
        state_dir=args.state_dir,
        interval=args.interval,
        transition_interval=args.transition_interval,
    )
    controller = Controller(
        options,
        client("ec2"),
        client("elbv2"),
        client("rds"),
        client("autoscaling"),
        acm=client("acm"),
        cloudfront=client("cloudfront", edge),
        route53=client("route53", edge),
        edge_acm=client("acm", edge),
        edge_wafv2=client("wafv2", edge),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        controller.log.info(f"{signal.Signals(signum).name}: finishing the pass")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(controller, args.interval, args.once, stop)


if __name__ == "__main__":
    sys.exit(main())
