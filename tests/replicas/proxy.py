"""A TCP proxy the test controls, between one replica and PostgreSQL: ``cut()`` turns it
into a black hole (connections stay open, nothing gets through, new ones are accepted and
never answered: the worst network fault, where only timeouts notice), ``cut_ports()``
black-holes only the connections whose upstream local port is given (one connection of a
replica, found in ``pg_stat_activity.client_port``), ``heal()`` closes the black-holed
connections and relays again."""

from __future__ import annotations

import contextlib
import socket
import threading


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        #: upstream local ports of the connections relayed now, and those cut
        self.ports: set[int] = set()
        self._cut_ports: set[int] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._track(client)
            if self._cut.is_set():
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(upstream)
            port: int = upstream.getsockname()[1]
            self.ports.add(port)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, port), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, port: int) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._cut.is_set() or port in self._cut_ports:
                    continue  # swallowed
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self._cut.set()

    def cut_ports(self, ports: set[int]) -> None:
        self._cut_ports |= ports

    def heal(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._cut.clear()
        self._cut_ports.clear()
        self.ports.clear()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.heal()
