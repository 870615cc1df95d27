"""Settings from clouds.yaml / secure.yaml and environment variables. Pure: no event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecs_rebuild_async import ECS, NOVA, InvalidRequest
from ecs_rebuild_async._auth import AkSkAuth, KeystoneAuth, TokenAuth, build_auth
from ecs_rebuild_async._config import AuthKind, ClientConfig, config_from_cloud, config_from_env

CLOUDS = """
clouds:
  devstack:
    auth:
      auth_url: http://127.0.0.1/identity
      username: demo
      project_name: demo
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionOne
    interface: internal
    compute_api_version: "2.54"
    dialect: nova
  otc:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://iam.eu-de.otc.t-systems.com/v3
      application_credential_id: ac-1
    regions: [eu-de, eu-nl]
  ak:
    auth_type: aksk
    auth:
      ak: the-ak
      project_id: 0123456789abcdef0123456789abcdef
    compute_endpoint_override: https://ecs.eu-de.otc.t-systems.com
  static:
    auth_type: token
    auth:
      token: the-token
    compute_endpoint_override: http://127.0.0.1:8774/v2.1
    verify: false
"""

SECURE = """
clouds:
  devstack:
    auth:
      password: pw-secret
  otc:
    auth:
      application_credential_secret: app-secret
  ak:
    auth:
      sk: the-sk
"""

SECRETS = ("pw-secret", "app-secret", "the-sk", "the-ak", "the-token", "sts-token")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "clouds.yaml").write_text(CLOUDS)
    (tmp_path / "secure.yaml").write_text(SECURE)
    return {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}


def _no_secret_in(config: ClientConfig) -> None:
    for secret in SECRETS:
        assert secret not in repr(config)


def test_password_cloud_merges_secure_yaml(files: dict[str, str]) -> None:
    config = config_from_cloud("devstack", files, search_paths=[])
    assert config.auth_kind is AuthKind.PASSWORD
    assert config.password == "pw-secret"
    assert (config.username, config.user_domain_name) == ("demo", "Default")
    assert (config.project_name, config.project_domain_id) == ("demo", "default")
    assert (config.region, config.interface, config.microversion) == (
        "RegionOne",
        "internal",
        "2.54",
    )
    assert config.dialect is NOVA
    assert config.cloud == "devstack"
    _no_secret_in(config)
    auth = build_auth(config)
    assert isinstance(auth, KeystoneAuth)
    assert "pw-secret" not in repr(auth)


def test_os_cloud_selects_the_cloud(files: dict[str, str]) -> None:
    config = config_from_env({**files, "OS_CLOUD": "otc"})
    assert config.auth_kind is AuthKind.APPLICATION_CREDENTIAL
    assert config.application_credential_secret == "app-secret"
    assert config.region == "eu-de"  # the first of 'regions'
    assert config.dialect is ECS  # an OTC host
    assert config.password is None
    _no_secret_in(config)


def test_aksk_cloud_completes_bare_endpoint(files: dict[str, str]) -> None:
    config = config_from_cloud("ak", files, search_paths=[])
    assert config.auth_kind is AuthKind.AKSK
    assert (config.ak, config.sk) == ("the-ak", "the-sk")
    assert config.endpoint == (
        "https://ecs.eu-de.otc.t-systems.com/v2.1/0123456789abcdef0123456789abcdef"
    )
    assert isinstance(build_auth(config), AkSkAuth)
    _no_secret_in(config)


def test_token_cloud(files: dict[str, str]) -> None:
    config = config_from_cloud("static", files, search_paths=[])
    assert config.auth_kind is AuthKind.TOKEN
    assert config.endpoint == "http://127.0.0.1:8774/v2.1"
    assert config.verify is False
    assert isinstance(build_auth(config), TokenAuth)
    _no_secret_in(config)


def test_clouds_found_in_search_path_directory(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text(CLOUDS)
    (tmp_path / "secure.yaml").write_text(SECURE)
    config = config_from_cloud("devstack", {}, search_paths=[tmp_path / "missing", tmp_path])
    assert config.password == "pw-secret"


def test_unknown_cloud_names_the_known_ones(files: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match=r"'nope'.*ak, devstack, otc, static"):
        config_from_cloud("nope", files, search_paths=[])


def test_several_clouds_need_a_name(files: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match="OS_CLOUD"):
        config_from_cloud(None, files, search_paths=[])


def test_single_cloud_is_used_without_name(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n  only:\n    auth_type: token\n    auth: {token: the-token}\n"
        "    compute_endpoint_override: http://127.0.0.1/v2.1\n"
    )
    assert config_from_cloud(None, {"OS_CLIENT_CONFIG_FILE": str(path)}).cloud == "only"


def test_missing_clouds_yaml_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"no clouds\.yaml found") as caught:
        config_from_cloud("x", {}, search_paths=[tmp_path])
    assert str(tmp_path) in str(caught.value)


def test_missing_secret_in_cloud_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(CLOUDS)  # no secure.yaml beside it
    with pytest.raises(InvalidRequest, match=r"clouds\.devstack\.auth\.password"):
        config_from_cloud("devstack", {"OS_CLIENT_CONFIG_FILE": str(path)}, search_paths=[])


def test_bad_yaml_gives_the_line_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n  a:\n    auth: {password: pw-secret\n")
    with pytest.raises(InvalidRequest, match="not valid YAML at line") as caught:
        config_from_cloud("a", {"OS_CLIENT_CONFIG_FILE": str(path)})
    assert "pw-secret" not in str(caught.value)


def test_bad_dialect_key(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(CLOUDS.replace("dialect: nova", "dialect: azure"))
    (tmp_path / "secure.yaml").write_text(SECURE)
    with pytest.raises(InvalidRequest, match=r"clouds\.devstack\.dialect"):
        config_from_cloud("devstack", {"OS_CLIENT_CONFIG_FILE": str(path)})


# -- OS_* variables --------------------------------------------------------------------------

OPENRC = {
    "OS_AUTH_URL": "http://127.0.0.1/identity/v3",
    "OS_USERNAME": "demo",
    "OS_PASSWORD": "pw-secret",
    "OS_PROJECT_NAME": "demo",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_ID": "default",
    "OS_REGION_NAME": "RegionOne",
    "OS_INTERFACE": "publicURL",
    "OS_COMPUTE_API_VERSION": "2.60",
}


def test_openrc_password() -> None:
    config = config_from_env(OPENRC)
    assert config.auth_kind is AuthKind.PASSWORD
    assert config.auth_url == "http://127.0.0.1/identity/v3"
    assert (config.region, config.interface, config.microversion) == ("RegionOne", "public", "2.60")
    assert config.endpoint is None
    assert config.dialect is None
    _no_secret_in(config)


def test_default_domain_fills_both_domains() -> None:
    env = {k: v for k, v in OPENRC.items() if "DOMAIN" not in k}
    config = config_from_env({**env, "OS_DEFAULT_DOMAIN_ID": "default"})
    assert (config.user_domain_id, config.project_domain_id) == ("default", "default")


@pytest.mark.parametrize("version", ["2", "latest", ""])
def test_unpinned_compute_api_version(version: str) -> None:
    assert config_from_env({**OPENRC, "OS_COMPUTE_API_VERSION": version}).microversion is None


def test_bad_compute_api_version_names_the_variable() -> None:
    with pytest.raises(InvalidRequest, match="OS_COMPUTE_API_VERSION"):
        config_from_env({**OPENRC, "OS_COMPUTE_API_VERSION": "2.x"})


def test_openrc_application_credential() -> None:
    config = config_from_env(
        {
            "OS_AUTH_URL": "https://iam.example.test/v3",
            "OS_APPLICATION_CREDENTIAL_ID": "ac-1",
            "OS_APPLICATION_CREDENTIAL_SECRET": "app-secret",
            "OS_AUTH_TYPE": "v3applicationcredential",
        }
    )
    assert config.auth_kind is AuthKind.APPLICATION_CREDENTIAL
    assert config.application_credential_id == "ac-1"
    _no_secret_in(config)


def test_openrc_token_needs_an_endpoint() -> None:
    with pytest.raises(InvalidRequest, match="OS_COMPUTE_ENDPOINT"):
        config_from_env({"OS_TOKEN": "the-token", "OS_AUTH_URL": "http://127.0.0.1/v3"})
    config = config_from_env(
        {"OS_TOKEN": "the-token", "OS_ENDPOINT_OVERRIDE": "http://127.0.0.1:8774/v2.1"}
    )
    assert config.auth_kind is AuthKind.TOKEN
    assert config.endpoint == "http://127.0.0.1:8774/v2.1"


def test_insecure_and_cacert() -> None:
    assert config_from_env({**OPENRC, "OS_INSECURE": "true"}).verify is False
    assert config_from_env({**OPENRC, "OS_CACERT": "/ca.pem"}).verify == "/ca.pem"


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("OS_AUTH_URL", "OS_AUTH_URL"),
        ("OS_PASSWORD", "OS_USERNAME and OS_PASSWORD (or OS_APPLICATION_CREDENTIAL_ID and"),
        ("OS_USERNAME", "OS_USERNAME or OS_USER_ID"),
        ("OS_USER_DOMAIN_NAME", "OS_USER_DOMAIN_NAME or OS_USER_DOMAIN_ID"),
        ("OS_PROJECT_DOMAIN_ID", "OS_PROJECT_DOMAIN_NAME or OS_PROJECT_DOMAIN_ID"),
    ],
)
def test_missing_openrc_piece_is_named(drop: str, named: str) -> None:
    env = {k: v for k, v in OPENRC.items() if k != drop}
    with pytest.raises(InvalidRequest) as caught:
        config_from_env(env)
    assert named in str(caught.value)
    assert "pw-secret" not in str(caught.value)


def test_unknown_auth_type() -> None:
    with pytest.raises(InvalidRequest, match="OS_AUTH_TYPE 'saml2'"):
        config_from_env({**OPENRC, "OS_AUTH_TYPE": "saml2"})


def test_empty_environment_says_what_to_set() -> None:
    with pytest.raises(InvalidRequest, match="no credentials found") as caught:
        config_from_env({})
    # Every way to give them: clouds.yaml, an openrc, a token, Huawei Cloud's AK/SK.
    for way in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_TOKEN", "HUAWEICLOUD_SDK_AK"):
        assert way in str(caught.value)


# -- Huawei Cloud variables ------------------------------------------------------------------

HUAWEI = {
    "HUAWEICLOUD_SDK_AK": "the-ak",
    "HUAWEICLOUD_SDK_SK": "the-sk",
    "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN": "sts-token",
    "HUAWEICLOUD_SDK_ECS_ENDPOINT": "https://ecs.cn-north-4.myhuaweicloud.com",
}


def test_huawei_variables() -> None:
    config = config_from_env(HUAWEI)
    assert config.auth_kind is AuthKind.AKSK
    assert (config.ak, config.sk, config.security_token) == ("the-ak", "the-sk", "sts-token")
    assert config.endpoint == (
        "https://ecs.cn-north-4.myhuaweicloud.com/v2.1/0123456789abcdef0123456789abcdef"
    )
    assert config.dialect is ECS
    _no_secret_in(config)
    auth = build_auth(config)
    assert isinstance(auth, AkSkAuth)
    assert auth.project_id == "0123456789abcdef0123456789abcdef"


def test_huawei_endpoint_with_path_is_kept() -> None:
    config = config_from_env({**HUAWEI, "HUAWEICLOUD_SDK_ECS_ENDPOINT": "https://e.test/v2/p"})
    assert config.endpoint == "https://e.test/v2/p"


def test_huawei_without_endpoint_explains_why_it_is_needed() -> None:
    env = {k: v for k, v in HUAWEI.items() if k != "HUAWEICLOUD_SDK_ECS_ENDPOINT"}
    with pytest.raises(InvalidRequest, match=r"no service catalog.*HUAWEICLOUD_SDK_ECS_ENDPOINT"):
        config_from_env(env)


@pytest.mark.parametrize("missing", ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"])
def test_huawei_half_a_key_pair(missing: str) -> None:
    env = {k: v for k, v in HUAWEI.items() if k != missing}
    with pytest.raises(InvalidRequest, match=missing) as caught:
        config_from_env(env)
    for secret in SECRETS:
        assert secret not in str(caught.value)


def test_config_is_frozen() -> None:
    config = config_from_env(HUAWEI)
    with pytest.raises(AttributeError):
        config.endpoint = "x"  # type: ignore[misc]  # frozen: must raise
