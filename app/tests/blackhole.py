"""A TCP proxy on 127.0.0.1 that fails the way a network does when a
database's host moves (a Multi-AZ failover): tests only, like pgserver.py.

It forwards to a backend port until :meth:`BlackHoleProxy.black_hole`: from
then on every byte is dropped, both ways, on the connections it has and on
the ones it accepts, and none is closed (no FIN, no RST): the client's
kernel sees a live peer, only the answers never come. After
:meth:`BlackHoleProxy.move_to` new connections reach the new backend; the
black-holed ones stay so until :meth:`BlackHoleProxy.close`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class _Link:
    """A client's connection and its upstream one (None: accepted while
    black-holed); bytes pass while ``forwarding`` is set."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.forwarding = threading.Event()
        if upstream is not None:
            self.forwarding.set()

    def close(self) -> None:
        self.forwarding.clear()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class BlackHoleProxy:
    """127.0.0.1:``port`` to the backend, until black-holed (module doc)."""

    def __init__(self, backend_port: int) -> None:
        self._backend: int | None = backend_port
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]

    def start(self) -> BlackHoleProxy:
        self._spawn(self._accept_loop)
        return self

    def black_hole(self) -> None:
        """Drop every byte from now on, both ways; close nothing."""
        with self._lock:
            self._backend = None
            links = list(self._links)
        for link in links:
            link.forwarding.clear()

    def move_to(self, backend_port: int) -> None:
        """New connections go to ``backend_port``; black-holed ones stay so."""
        with self._lock:
            self._backend = backend_port

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                backend = self._backend
            upstream = None
            if backend is not None:
                try:
                    upstream = socket.create_connection(("127.0.0.1", backend), timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
                if self._backend != backend:  # black-holed or moved meanwhile
                    link.forwarding.clear()
            self._spawn(self._pump, link, client, upstream)
            if upstream is not None:
                self._spawn(self._pump, link, upstream, client)

    @staticmethod
    def _pump(link: _Link, src: socket.socket, dst: socket.socket | None) -> None:
        """Copy src to dst while the link forwards, else read and drop. At
        src's end a forwarding link is closed (a normal disconnect); a
        black-holed one stays open: it answers nothing, not even a FIN."""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                break
            if dst is not None and link.forwarding.is_set():
                try:
                    dst.sendall(data)
                except OSError:
                    break
        if link.forwarding.is_set():
            link.close()

    def __enter__(self) -> BlackHoleProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
