"""JWTs: ragd's own tokens and an external OIDC issuer's (JWKS file), with every refusal case."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from ragd.api.app import create_app
from ragd.config import DEV_SECRET
from ragd.db.models import Role
from tests.fixtures.auth import AuthFactory
from tests.security.conftest import security_settings

ISSUER = "https://idp.example/realms/acme"
AUDIENCE = "ragd-api"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def oidc_client(
    tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey
) -> Iterator[tuple[TestClient, AuthFactory]]:
    tmp = tmp_path_factory.mktemp("oidc")
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    settings = security_settings(
        tmp, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks=str(jwks), auth_failures_per_minute=1000
    )
    with TestClient(create_app(settings)) as c:  # type: ignore[arg-type]
        yield c, AuthFactory(c.app.state.ragd.engine)  # type: ignore[attr-defined]


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice-123",
        "iat": now,
        "exp": now + 300,
        "tenant": "acme",
        "ragd_role": "editor",
        "groups": ["hr"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str = "k1", alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _who(client: TestClient, token: str) -> Any:
    return client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})


def test_valid_oidc_token(oidc_client: tuple[TestClient, AuthFactory], rsa_key: rsa.RSAPrivateKey) -> None:
    client, _ = oidc_client
    r = _who(client, _sign(rsa_key, _claims()))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "oidc:alice-123",
        "tenant": "acme",
        "role": "editor",
        "groups": ["hr"],
        "auth_method": "oidc",
        "key_id": None,
        "scopes": [],
    }


def _b64(data: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_oidc_refusals(oidc_client: tuple[TestClient, AuthFactory], rsa_key: rsa.RSAPrivateKey) -> None:
    client, _ = oidc_client
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    cases = {
        "expired": _sign(rsa_key, _claims(iat=now - 600, exp=now - 300)),
        "wrong audience": _sign(rsa_key, _claims(aud="someone-else")),
        "wrong issuer signed by the right key": _sign(rsa_key, _claims(iss="https://evil.example")),
        "no exp": _sign(rsa_key, _claims(exp=None)),
        "signed by another key": _sign(other_key, _claims()),
        "unknown kid": _sign(rsa_key, _claims(), kid="k9"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(_claims())}.",
        "HS256 with the public key as secret": _hs256_confusion(public_pem),
        "no tenant": _sign(rsa_key, _claims(tenant=None)),
        "unknown role": _sign(rsa_key, _claims(ragd_role="superuser")),
        "garbage": "a.b.c",
    }
    for name, token in cases.items():
        r = _who(client, token)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["error"]["message"] == "invalid credentials"


def _hs256_confusion(public_pem: bytes) -> str:
    # PyJWT refuses to sign HS256 with a PEM key, so build the token by hand: the classic
    # algorithm-confusion attack, which ragd must refuse (asymmetric algorithms only).
    import base64
    import hashlib
    import hmac

    head = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    body = _b64(_claims())
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_local_tokens(oidc_client: tuple[TestClient, AuthFactory]) -> None:
    client, auth = oidc_client
    u = auth.user("acme", Role.reader, username="lt")
    token = client.post(
        "/v1/auth/token", json={"tenant": "acme", "username": "lt", "password": u.password}
    ).json()
    good = token["access_token"]
    assert _who(client, good).json()["auth_method"] == "jwt"
    secret = DEV_SECRET
    now = int(time.time())
    base = {"iss": "ragd", "aud": "ragd", "sub": u.user_id, "tenant": "acme", "iat": now, "exp": now + 60}
    forged = {
        "wrong secret": jwt.encode(base, "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256"),
        "expired": jwt.encode({**base, "iat": now - 120, "exp": now - 60}, secret, algorithm="HS256"),
        "other tenant claim": jwt.encode({**base, "tenant": "globex"}, secret, algorithm="HS256"),
        "unknown user": jwt.encode({**base, "sub": "f" * 32}, secret, algorithm="HS256"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(base)}.",
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
    }
    for name, tok in forged.items():
        assert _who(client, tok).status_code == 401, name


def test_oidc_settings_refuse_symmetric_or_incomplete_configuration(tmp_path: Path) -> None:
    from pydantic import ValidationError

    full = {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks": "/x"}
    for bad, match in (
        ({**full, "oidc_algorithms": ["HS256"]}, "asymmetric"),
        ({**full, "oidc_algorithms": ["none"]}, "asymmetric"),
        ({"oidc_issuer": ISSUER}, "oidc_audience"),
    ):
        with pytest.raises(ValidationError, match=match):
            security_settings(tmp_path, **bad)
