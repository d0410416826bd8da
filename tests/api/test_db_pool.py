"""A request holds a pooled database connection only while it talks to the database.

Real PostgreSQL and real HTTP: uploads whose bodies are still streaming in must not starve every
other request of connections (a scale-out soak locked up this way: uploads kept the connection of
their authorization lookup while they read the body, then waited on the pool for another).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from ragd.api.app import create_app
from ragd.db.models import Role
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory
from tests.fixtures.jobs import wait_job
from tests.fixtures.live_server import serve_in_thread

pytestmark = pytest.mark.postgres

BOUNDARY = "ragd-test-boundary"


def _multipart(filename: str, content: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def _start_upload(port: int, coll: str, actor: Actor, body: bytes) -> socket.socket:
    """Send an upload's headers and the first half of its body, then stop."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST /v1/collections/{coll}/documents HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {actor.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _finish_upload(sock: socket.socket, body: bytes) -> tuple[int, bytes]:
    """Send the rest of the body; the response's status and body."""
    sock.sendall(body[len(body) // 2 :])
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_stalled_uploads_leave_connections_and_an_empty_pool_answers_503(tmp_path: Path, pg_url: str) -> None:
    # pool_size 1 (+1 overflow): two connections in all, and a 2 s wait for one before a 503.
    settings = make_settings(
        tmp_path,
        db={"url": pg_url, "pool_size": 1, "pool_timeout_s": 2},
        llm={"load_on_startup": False},
        qdrant={"mode": "memory"},
    )
    app = create_app(settings)
    with serve_in_thread(app) as port:
        auth = AuthFactory(app.state.ragd.engine)
        editor = auth.user("acme", Role.editor)
        coll = auth.collection("acme", "handbook", owner=editor).name
        bodies = [
            _multipart(f"note-{i}.txt", f"Stalled upload number {i} about the harbour crane. ".encode() * 40)
            for i in range(2)
        ]
        # As many uploads as there are connections, each authorized and then stuck mid-body.
        socks = [_start_upload(port, coll, editor, body) for body in bodies]
        try:
            _check_served_then_finish(port, coll, editor, socks, bodies)
        finally:  # a failed check must not leave requests (and their locks) behind
            for sock in socks:
                sock.close()

        # Truly out of connections (both held elsewhere): a quick 503 with Retry-After, no hang.
        engine = app.state.ragd.engine
        held = [engine.connect() for _ in range(2)]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                busy = client.get(f"/v1/collections/{coll}/documents", headers=editor.headers)
        finally:
            for conn in held:
                conn.close()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
        assert busy.json()["error"]["code"] == "service_unavailable"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get(f"/v1/collections/{coll}/documents", headers=editor.headers).status_code == 200


def _check_served_then_finish(
    port: int, coll: str, editor: Actor, socks: list[socket.socket], bodies: list[bytes]
) -> None:
    time.sleep(1.5)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for _ in range(3):  # each needs connections: authentication and the collection lookup
            listed = client.get(f"/v1/collections/{coll}/documents", headers=editor.headers)
            assert listed.status_code == 200, listed.text
        searched = client.post("/v1/search", headers=editor.headers, json={"query": "crane"})
        assert searched.status_code == 200, searched.text

        # The stalled uploads then complete: nothing was lost while they waited.
        for sock, body in zip(socks, bodies, strict=True):
            status, payload = _finish_upload(sock, body)
            assert status == 202, payload
            job_id = json.loads(payload)["files"][0]["job_id"]
            assert wait_job(client, editor, job_id)["status"] == "ready"
