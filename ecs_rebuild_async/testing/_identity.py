"""A Keystone v3 token endpoint and the token store that the compute API checks."""

from __future__ import annotations

import json
import secrets
from typing import Any

import attrs

from ._clock import iso_micro
from ._replies import Reply, Request, json_reply, keystone_error

__all__ = ["Identity", "TokenStore", "issue_token", "unauthorized"]

_UNAUTHORIZED = "The request you have made requires authentication."


@attrs.frozen
class Identity:
    """The one user, project and credentials the fake knows."""

    user_id: str
    username: str
    password: str = attrs.field(repr=False)
    user_domain_id: str
    user_domain_name: str
    project_id: str
    project_name: str
    app_cred_id: str
    app_cred_secret: str = attrs.field(repr=False)
    access_key: str
    secret_key: str = attrs.field(repr=False)
    region: str


class TokenStore:
    """Issued tokens and when they expire (fake time; None = never)."""

    def __init__(self) -> None:
        self._expiry: dict[str, float | None] = {}

    def issue(self, expires_at: float | None) -> str:
        # Fernet tokens start with "gAAAAA"; clients sometimes sniff that.
        token = "gAAAAA" + secrets.token_urlsafe(48)
        self._expiry[token] = expires_at
        return token

    def valid(self, token: str, now: float) -> bool:
        if token not in self._expiry:
            return False
        expiry = self._expiry[token]
        return expiry is None or now < expiry

    def expire_all(self, now: float) -> None:
        for token in self._expiry:
            self._expiry[token] = now

    def issued(self) -> list[str]:
        """Every token issued so far, in order."""
        return list(self._expiry)


def _domain_ok(given: Any, ident: Identity) -> bool:
    if not isinstance(given, dict):
        return False
    if "id" in given:
        return bool(given["id"] == ident.user_domain_id)
    return bool(given.get("name") == ident.user_domain_name)


def _password_ok(method: Any, ident: Identity) -> bool:
    user = method.get("user") if isinstance(method, dict) else None
    if not isinstance(user, dict) or user.get("password") != ident.password:
        return False
    if "id" in user:
        return bool(user["id"] == ident.user_id)
    return user.get("name") == ident.username and _domain_ok(user.get("domain"), ident)


def _app_cred_ok(method: Any, ident: Identity) -> bool:
    if not isinstance(method, dict) or method.get("secret") != ident.app_cred_secret:
        return False
    return bool(method.get("id") == ident.app_cred_id)


def _scope_ok(scope: Any, ident: Identity) -> bool:
    if scope is None:
        return True  # unscoped requests get the one project, to keep the fake small
    project = scope.get("project") if isinstance(scope, dict) else None
    if not isinstance(project, dict):
        return False
    if "id" in project:
        return bool(project["id"] == ident.project_id)
    return project.get("name") == ident.project_name and _domain_ok(project.get("domain"), ident)


def _catalog(
    ident: Identity, compute_url: str, identity_url: str, image_url: str | None
) -> list[dict[str, Any]]:
    def endpoints(url: str, prefix: str) -> list[dict[str, str]]:
        return [
            {
                "id": f"{prefix}{i}",
                "interface": interface,
                "region": ident.region,
                "region_id": ident.region,
                "url": url,
            }
            for i, interface in enumerate(("public", "internal"))
        ]

    catalog = [
        {"type": "compute", "name": "nova", "id": "c0", "endpoints": endpoints(compute_url, "ce")},
        {
            "type": "identity",
            "name": "keystone",
            "id": "i0",
            "endpoints": endpoints(identity_url, "ie"),
        },
    ]
    if image_url is not None:
        catalog.append(
            {"type": "image", "name": "glance", "id": "g0", "endpoints": endpoints(image_url, "ge")}
        )
    return catalog


def issue_token(
    request: Request,
    ident: Identity,
    store: TokenStore,
    *,
    now: float,
    lifetime: float,
    compute_url: str,
    identity_url: str,
    image_url: str | None = None,
) -> Reply:
    """``POST /v3/auth/tokens``: 201 with ``X-Subject-Token``, or Keystone's 401/400."""
    try:
        auth = json.loads(request.body)["auth"]
        identity = auth["identity"]
        methods = identity["methods"]
    except (ValueError, KeyError, TypeError):
        return keystone_error(400, "Bad Request", "Malformed auth request.", None)
    if methods == ["password"]:
        ok = _password_ok(identity.get("password"), ident)
    elif methods == ["application_credential"]:
        ok = _app_cred_ok(identity.get("application_credential"), ident)
    else:
        ok = False
    if not ok or not _scope_ok(auth.get("scope"), ident):
        return keystone_error(401, "Unauthorized", _UNAUTHORIZED, identity_url)
    expires_at = now + lifetime
    token = store.issue(expires_at)
    domain = {"id": ident.user_domain_id, "name": ident.user_domain_name}
    body = {
        "token": {
            "methods": methods,
            "roles": [{"id": "r-member", "name": "member"}, {"id": "r-reader", "name": "reader"}],
            "expires_at": iso_micro(expires_at),
            "issued_at": iso_micro(now),
            "project": {"domain": domain, "id": ident.project_id, "name": ident.project_name},
            "user": {
                "domain": domain,
                "id": ident.user_id,
                "name": ident.username,
                "password_expires_at": None,
            },
            "catalog": _catalog(ident, compute_url, identity_url, image_url),
            "audit_ids": [secrets.token_urlsafe(16)],
            "is_domain": False,
        }
    }
    return json_reply(201, body, [("X-Subject-Token", token)])


def unauthorized(identity_url: str) -> Reply:
    """keystonemiddleware's answer to a missing, unknown or expired token."""
    return keystone_error(401, "Unauthorized", _UNAUTHORIZED, identity_url)
