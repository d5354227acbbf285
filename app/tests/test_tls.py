"""TLS to the database, checked as the fleet runs it (TASKBOARD_DB_SSLMODE=
verify-full against the CA bundle of TASKBOARD_DB_SSLROOTCERT), against a
real PostgreSQL that speaks TLS with a certificate of a CA made here and
refuses TCP logins without TLS (as RDS does with rds.force_ssl).

A server whose certificate another CA signed, or that names another host
than the one connected to, is refused: the service answers 503, not 500,
and writes nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from pgserver import PostgresServer
from sqlalchemy import text
from taskboard import create_app, migrations
from taskboard.config import Settings
from taskboard.db import EXT_KEY, make_engine

# the certificate names this host (as RDS's names the instance's endpoint)
NAME = "localhost"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(where: Path, name: str) -> Path:
    """A CA's key and certificate in ``where`` (ca.key, ca.crt)."""
    where.mkdir(parents=True)
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=where,
    )  # fmt: skip
    return where / "ca.crt"


def issue(ca: Path, where: Path, dns: str) -> Path:
    """server.key and server.crt in ``where``, for ``dns``, signed by ``ca``'s CA."""
    where.mkdir(parents=True)
    (where / "ext.cnf").write_text(
        f"subjectAltName=DNS:{dns}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={dns}",
        cwd=where,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
        cwd=where,
    )  # fmt: skip
    return where


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki")
    ca = make_ca(base / "ca", "taskboard test CA")
    other = make_ca(base / "other", "another CA")
    return {"ca": ca, "other": other, "server": issue(ca, base / "server", NAME)}


@pytest.fixture(scope="module")
def tls_pg(pki) -> Iterator[PostgresServer]:
    server = PostgresServer(tls=pki["server"]).start()
    try:
        server.create_database("taskboard_tls")
        yield server
    finally:
        server.destroy()


def url(server: PostgresServer, host: str = NAME) -> str:
    return f"postgresql+psycopg2://postgres@{host}:{server.port}/taskboard_tls"


def env_for(server: PostgresServer, rootcert: Path, mode: str = "verify-full", host: str = NAME):
    return {
        "DATABASE_URL": url(server, host),
        "TASKBOARD_DB_SSLMODE": mode,
        "TASKBOARD_DB_SSLROOTCERT": str(rootcert),
        "TASKBOARD_DB_CONNECT_TIMEOUT": "2",
    }


@pytest.fixture(scope="module")
def migrated(tls_pg, pki) -> PostgresServer:
    # the migrations connect as the service does
    engine = make_engine(Settings.from_env(env_for(tls_pg, pki["ca"])), for_migrations=True)
    try:
        migrations.upgrade(engine, "head")
    finally:
        engine.dispose()
    return tls_pg


def app_with(env: dict[str, str]) -> Flask:
    return create_app(env=env)


def test_the_server_refuses_a_login_without_tls(tls_pg):
    # the fixture is what the fleet's database is: no TLS, no login
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(
            host=NAME, port=tls_pg.port, user="postgres", dbname="taskboard_tls", sslmode="disable"
        ).close()


def test_verify_full_with_the_right_ca_serves_over_tls(migrated, pki):
    app = app_with(env_for(migrated, pki["ca"]))
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        created = client.post("/api/tasks", json={"title": "over TLS"})
        assert created.status_code == 201, created.get_data(as_text=True)
        engine = app.extensions[EXT_KEY].engine
        with engine.connect() as conn:
            ssl, version = conn.execute(
                text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).one()
        assert ssl is True
        assert version.startswith("TLSv1.")
    finally:
        app.extensions[EXT_KEY].engine.dispose()


@pytest.mark.parametrize(
    ("case", "error"),
    [
        # a server whose certificate another CA signed (a man in the middle)
        ("other CA", "certificate verify failed"),
        # the right CA, but the certificate names another host than the one
        # connected to (verify-ca would accept it: see below)
        ("other name", "does not match host name"),
    ],
)
def test_an_unverified_server_gets_no_request(migrated, pki, case, error, caplog):
    rootcert, host = (pki["other"], NAME) if case == "other CA" else (pki["ca"], "127.0.0.1")
    app = app_with(env_for(migrated, rootcert, host=host))
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 503
        before = count_tasks(migrated, pki)
        answer = client.post("/api/tasks", json={"title": "must not land"})
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert count_tasks(migrated, pki) == before
        engine = app.extensions[EXT_KEY].engine
        with pytest.raises(Exception, match=error), engine.connect():
            pass
    finally:
        app.extensions[EXT_KEY].engine.dispose()


def test_verify_ca_does_not_check_the_name(migrated, pki):
    # what verify-full adds: with verify-ca the address is accepted
    app = app_with(env_for(migrated, pki["ca"], mode="verify-ca", host="127.0.0.1"))
    try:
        assert app.test_client().get("/readyz").status_code == 200
    finally:
        app.extensions[EXT_KEY].engine.dispose()


def count_tasks(server: PostgresServer, pki) -> int:
    conn = psycopg2.connect(
        host=NAME,
        port=server.port,
        user="postgres",
        dbname="taskboard_tls",
        sslmode="verify-full",
        sslrootcert=str(pki["ca"]),
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tasks")
            return cur.fetchone()[0]
    finally:
        conn.close()
