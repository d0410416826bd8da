"""The ingestion HTTP API with the real app: uploads, jobs, documents, and hostile input."""

from __future__ import annotations

import errno
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragd.api.app import create_app
from ragd.db.models import Role
from ragd.ingestion.blob_store import BlobWriter
from tests.conftest import make_settings
from tests.fixtures.auth import Actor, AuthFactory
from tests.fixtures.jobs import wait_job
from tests.ingestion import samples

MAX_FILE = 64 * 1024


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("ingest-api"),
        llm={"load_on_startup": False},
        qdrant={"mode": "memory"},
        ingestion={"max_upload_bytes": MAX_FILE, "max_files_per_upload": 8},
        queue={"lease_s": 60},
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def auth(client: TestClient) -> AuthFactory:
    return AuthFactory(client.app.state.ragd.engine)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def editor(auth: AuthFactory) -> Actor:
    return auth.user("acme", Role.editor)


@pytest.fixture(scope="module")
def coll(auth: AuthFactory, editor: Actor) -> str:
    return auth.collection("acme", "handbook", owner=editor).name


def post(client: TestClient, actor: Actor, coll: str, files: list[tuple[str, bytes]], **data: str) -> Any:
    parts = [("files", (name, io.BytesIO(body), "application/octet-stream")) for name, body in files]
    return client.post(f"/v1/collections/{coll}/documents", headers=actor.headers, files=parts, data=data)


def test_mixed_upload_gives_per_file_results(client: TestClient, editor: Actor, coll: str) -> None:
    files = [
        ("ocean.txt", samples.TEXT),
        ("cooking.md", samples.MARKDOWN),
        ("empty.txt", b""),
        ("big.txt", b"x " * MAX_FILE),
        ("../../etc/passwd", b"root:x:0:0"),
        ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\0" * 100),
        ("broken.pdf", samples.pdf([["Hello", "World"]])[:300]),
    ]
    r = post(client, editor, coll, files, metadata=json.dumps({"metadata": {"team": "ops"}}))
    assert r.status_code == 202, r.text
    res = {f["filename"]: f for f in r.json()["files"]}
    assert len(r.json()["files"]) == len(files)
    assert res["ocean.txt"]["status"] == "queued" and res["ocean.txt"]["content_type"] == "text/plain"
    assert res["empty.txt"]["error"]["code"] == "bad_request"
    assert res["big.txt"]["error"]["code"] == "payload_too_large"
    assert res["../../etc/passwd"]["error"]["message"] == "file names may not contain path separators"
    assert res["photo.pdf"]["error"]["code"] == "unsupported_media_type"
    good = wait_job(client, editor, res["ocean.txt"]["job_id"])
    assert good["status"] == "ready" and good["step"] == "ready" and good["filename"] == "ocean.txt"
    assert good["progress_done"] == good["progress_total"] > 0
    bad = wait_job(client, editor, res["broken.pdf"]["job_id"])
    assert bad["status"] == "failed" and "corrupt" in bad["error"]
    wait_job(client, editor, res["cooking.md"]["job_id"])

    listing = client.get(f"/v1/collections/{coll}/documents?status=ready", headers=editor.headers).json()
    assert {d["name"] for d in listing["items"]} >= {"ocean.txt", "cooking.md"}
    assert all(d["status"] == "ready" for d in listing["items"])
    failed = client.get(f"/v1/collections/{coll}/documents?status=failed", headers=editor.headers).json()
    assert [d["name"] for d in failed["items"]] == ["broken.pdf"] and "corrupt" in failed["items"][0]["error"]
    page = client.get(f"/v1/collections/{coll}/documents?limit=1&offset=1", headers=editor.headers).json()
    assert len(page["items"]) == 1 and page["total"] >= 3

    doc_id = res["ocean.txt"]["document_id"]
    doc = client.get(f"/v1/documents/{doc_id}", headers=editor.headers).json()
    assert doc["metadata"] == {"team": "ops"} and doc["versions"][0]["chunk_count"] >= 1

    again = post(client, editor, coll, [("ocean.txt", samples.TEXT)])
    assert again.status_code == 202 and again.json()["files"][0]["status"] == "unchanged"

    retry = client.post(f"/v1/jobs/{good['id']}/retry", headers=editor.headers)
    assert retry.status_code == 409
    retry = client.post(f"/v1/jobs/{bad['id']}/retry", headers=editor.headers)
    assert retry.status_code == 202 and retry.json()["attempts"] <= 1  # reset, maybe already running
    assert wait_job(client, editor, bad["id"])["status"] == "failed"

    assert client.delete(f"/v1/documents/{doc_id}", headers=editor.headers).status_code == 204
    assert client.get(f"/v1/documents/{doc_id}", headers=editor.headers).status_code == 404


def test_a_full_data_volume_answers_507_and_stores_nothing(
    client: TestClient, editor: Actor, coll: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = BlobWriter.write
    seen: list[BlobWriter] = []

    def full_after_first_chunk(self: BlobWriter, chunk: bytes) -> None:
        seen.append(self)
        if len(seen) > 1:  # the disk fills up partway through the file
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, chunk)

    monkeypatch.setattr(BlobWriter, "write", full_after_first_chunk)
    big = samples.TEXT * (MAX_FILE // len(samples.TEXT) // 2)  # several body chunks
    r = post(client, editor, coll, [("ocean.txt", big), ("cooking.md", samples.MARKDOWN)])
    assert r.status_code == 507, r.text
    err = r.json()["error"]
    assert err["code"] == "insufficient_storage" and err["request_id"] and r.headers["Retry-After"] == "30"
    assert seen and not any(w.path.exists() for w in seen)  # no partial file left behind
    monkeypatch.setattr(BlobWriter, "write", write)  # space is back: the same upload goes through
    r = post(client, editor, coll, [("ocean-again.txt", big)])
    assert r.status_code == 202 and r.json()["files"][0]["status"] == "queued", r.text


def test_requests_without_an_acceptable_file_are_4xx(client: TestClient, editor: Actor, coll: str) -> None:
    url = f"/v1/collections/{coll}/documents"
    r = post(client, editor, coll, [("empty.txt", b"")])
    assert r.status_code == 400 and r.json()["error"]["message"] == "the file is empty"
    r = post(client, editor, coll, [("big.txt", b"y" * (MAX_FILE + 1))])
    assert r.status_code == 413
    r = post(client, editor, coll, [("a.bin", bytes(range(256)) * 4)])
    assert r.status_code == 415
    r = client.post(url, headers={**editor.headers, "content-type": "application/json"}, content=b"{}")
    assert r.status_code == 400
    r = client.post(
        url,
        headers={**editor.headers, "content-type": "multipart/form-data; boundary=XYZ"},
        content=b"--XYZ\r\nnot a header line\r\n\r\n",
    )
    assert r.status_code == 400
    r = post(client, editor, coll, [("ok.txt", samples.TEXT)], metadata="{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = post(client, editor, coll, [("ok.txt", samples.TEXT)], metadata=json.dumps({"acl": ["root"]}))
    assert r.status_code == 400
    r = client.post(url, headers=editor.headers, data={"metadata": "{}"}, files=[("other", ("", b""))])
    assert r.status_code == 400
    too_many = [(f"f{i}.txt", samples.TEXT + str(i).encode()) for i in range(9)]
    r = post(client, editor, coll, too_many)
    assert r.status_code == 202
    assert [f["status"] for f in r.json()["files"]].count("rejected") == 1


def test_authorization_and_tenancy(client: TestClient, auth: AuthFactory, editor: Actor, coll: str) -> None:
    reader = auth.user("acme", Role.reader)
    outsider = auth.admin("globex")
    r = post(client, editor, coll, [("tenancy.txt", b"Only acme may read this note about tenancy.")])
    job_id = r.json()["files"][0]["job_id"]
    doc_id = r.json()["files"][0]["document_id"]
    wait_job(client, editor, job_id)
    assert post(client, reader, coll, [("x.txt", samples.TEXT)]).status_code == 404  # no grant: unreadable
    assert client.get(f"/v1/jobs/{job_id}", headers=outsider.headers).status_code == 404
    assert client.get(f"/v1/documents/{doc_id}", headers=outsider.headers).status_code == 404
    assert client.delete(f"/v1/documents/{doc_id}", headers=outsider.headers).status_code == 404
    assert client.get(f"/v1/collections/{coll}/documents", headers=outsider.headers).status_code == 404
    assert client.get("/v1/jobs/" + "0" * 32, headers=editor.headers).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401
