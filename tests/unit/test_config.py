"""load_settings: TOML files merged in order, then GOCHAT_* environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gochat_py.config import (
    CONFIG_FILES,
    PROJECT_ROOT,
    ConfigError,
    Settings,
    load_settings,
    split_host_port,
)
from gochat_py.logic.reaper import SWEEP_INTERVAL


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.toml").write_text(text, encoding="utf-8")


def load(directory: Path, **environ: str) -> Settings:
    return load_settings(config_dir=directory, env="test", environ=dict(environ))


# --- defaults and files -------------------------------------------------------------------------


def test_empty_directory_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.env == "test"
    assert settings.config_dir == str(tmp_path.resolve())
    assert settings.state_dir == "state"
    assert settings.api.bind == "127.0.0.1:7070"
    assert settings.site.bind == "127.0.0.1:8080"
    assert settings.connect_websocket.bind == "127.0.0.1:7000"
    assert settings.connect_websocket.path == "/ws"
    assert settings.connect_tcp.bind == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert settings.connect.max_message_size == 512
    assert settings.connect.ping_interval + settings.connect.pong_timeout == 60
    assert settings.redis.address == "127.0.0.1:6379"
    assert settings.queue.stream == "gochat_stream"
    assert settings.log.level == "info"


def test_file_values_are_read(tmp_path: Path) -> None:
    write(tmp_path, "common", 'state_dir = "/srv/x"\n[redis]\naddress = "10.0.0.5:6380"\ndb = 3\n')
    write(tmp_path, "connect", '[connect]\nbuckets = 16\n[connect_tcp]\nbind = ["0.0.0.0:9001"]\n')
    write(tmp_path, "api", '[api]\nbind = "0.0.0.0:17070"\n')
    settings = load(tmp_path)
    assert settings.state_dir == "/srv/x"
    assert settings.redis.address == "10.0.0.5:6380"
    assert settings.redis.db == 3
    assert settings.redis.timeout == 3.0  # untouched key keeps its default
    assert settings.connect.buckets == 16
    assert settings.connect_tcp.bind == ["0.0.0.0:9001"]
    assert settings.api.bind == "0.0.0.0:17070"


def test_sections_split_over_files_are_merged_key_by_key(tmp_path: Path) -> None:
    write(tmp_path, "common", "[connect]\nbuckets = 8\n")
    write(tmp_path, "connect", "[connect]\nsend_buffer = 10000\n")
    settings = load(tmp_path)
    assert settings.connect.buckets == 8
    assert settings.connect.send_buffer == 10000


def test_later_file_wins_for_the_same_key(tmp_path: Path) -> None:
    assert CONFIG_FILES.index("common") < CONFIG_FILES.index("api")
    write(tmp_path, "common", '[api]\nbind = "1.1.1.1:1"\n')
    write(tmp_path, "api", '[api]\nbind = "2.2.2.2:2"\n')
    assert load(tmp_path).api.bind == "2.2.2.2:2"


def test_files_outside_the_list_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "other", "this is not toml at all [[[")
    assert load(tmp_path).api.bind == "127.0.0.1:7070"


def test_unknown_key_in_a_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "api", '[api]\nbind = "127.0.0.1:7070"\nport = 7070\n')
    with pytest.raises(ConfigError, match="port"):
        load(tmp_path)


def test_unknown_section_in_a_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "common", "[nosuchsection]\nx = 1\n")
    with pytest.raises(ConfigError, match="nosuchsection"):
        load(tmp_path)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "task", "[task\nbatch_size = 1\n")
    with pytest.raises(ConfigError, match=r"task\.toml"):
        load(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        '[connect]\nbuckets = "many"\n',
        "[connect]\nbuckets = 0\n",  # ge=1
        '[log]\nlevel = "verbose"\n',  # not one of the literals
        "[api]\nbind = 7070\n",  # a number is not a string
        "[etcd]\nlease_ttl = 1\n",  # ge=2
    ],
)
def test_invalid_values_are_config_errors(tmp_path: Path, text: str) -> None:
    write(tmp_path, "common", text)
    with pytest.raises(ConfigError):
        load(tmp_path)


def test_a_delivery_may_not_be_held_past_task_s_deadline(tmp_path: Path) -> None:
    """A held Deliver that outlives task's deadline would be sent again: every message twice."""
    write(tmp_path, "common", "[rpc]\ntimeout = 0.5\n")
    write(tmp_path, "connect", "[connect]\npace_max_hold = 0.5\n")
    with pytest.raises(ConfigError, match="pace_max_hold"):
        load(tmp_path)
    assert load(tmp_path, GOCHAT_CONNECT__PACE_LAG="0").connect.pace_max_hold == 0.5  # pacing off: no matter


def test_sentinels_come_as_a_list_with_the_master_s_name(tmp_path: Path) -> None:
    settings = load(
        tmp_path, GOCHAT_REDIS__SENTINELS="10.0.0.1:26379, 10.0.0.2:26379", GOCHAT_REDIS__MASTER_NAME="gochat"
    )
    assert settings.redis.sentinels == ["10.0.0.1:26379", "10.0.0.2:26379"]
    assert settings.redis.master_name == "gochat"
    assert load(tmp_path).redis.sentinels == []  # default: one Redis at [redis] address


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"GOCHAT_REDIS__SENTINELS": "10.0.0.1:26379"}, "master_name"),  # no name
        ({"GOCHAT_REDIS__MASTER_NAME": "gochat"}, "sentinels"),  # a name, nobody to ask
        ({"GOCHAT_REDIS__SENTINELS": "10.0.0.1", "GOCHAT_REDIS__MASTER_NAME": "m"}, "host:port"),
        ({"GOCHAT_REDIS__WAIT_TIMEOUT": "0"}, "wait_timeout"),  # WAIT 0 would block for ever
        ({"GOCHAT_REDIS__WAIT_REPLICAS": "-1"}, "wait_replicas"),
    ],
)
def test_bad_redis_high_availability_settings_are_config_errors(
    tmp_path: Path, environ: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        load(tmp_path, **environ)


def test_a_push_may_not_wait_for_replicas_past_the_rpc_deadline(tmp_path: Path) -> None:
    """The api would have given up: nobody would hear whether the push was accepted."""
    with pytest.raises(ConfigError, match="wait_timeout"):
        load(tmp_path, GOCHAT_REDIS__WAIT_REPLICAS="1", GOCHAT_REDIS__WAIT_TIMEOUT="3000")
    assert load(tmp_path, GOCHAT_REDIS__WAIT_REPLICAS="1", GOCHAT_REDIS__WAIT_TIMEOUT="2999").redis.wait_timeout == 2999
    assert load(tmp_path, GOCHAT_REDIS__WAIT_TIMEOUT="9000").redis.wait_timeout == 9000  # not waiting: no matter


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope")


# --- environment overrides ----------------------------------------------------------------------


def test_env_overrides_a_file_value(tmp_path: Path) -> None:
    write(tmp_path, "api", '[api]\nbind = "127.0.0.1:7070"\n')
    assert load(tmp_path, GOCHAT_API__BIND="0.0.0.0:9999").api.bind == "0.0.0.0:9999"


def test_env_nested_section_with_underscores_in_its_name(tmp_path: Path) -> None:
    settings = load(tmp_path, GOCHAT_CONNECT_WEBSOCKET__SERVER_ID="ws-a")
    assert settings.connect_websocket.server_id == "ws-a"
    assert settings.connect_tcp.server_id == ""


def test_env_top_level_key(tmp_path: Path) -> None:
    assert load(tmp_path, GOCHAT_STATE_DIR="/var/lib/g").state_dir == "/var/lib/g"


def test_env_values_are_coerced_to_numbers(tmp_path: Path) -> None:
    settings = load(tmp_path, GOCHAT_CONNECT__BUCKETS="8", GOCHAT_REDIS__TIMEOUT="0.5")
    assert settings.connect.buckets == 8
    assert isinstance(settings.connect.buckets, int)
    assert settings.redis.timeout == 0.5


def test_env_names_are_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, gochat_api__bind="1.2.3.4:5").api.bind == "1.2.3.4:5"


def test_env_list_accepts_a_comma_string(tmp_path: Path) -> None:
    settings = load(tmp_path, GOCHAT_CONNECT_TCP__BIND=" 10.0.0.1:7001 , ,10.0.0.1:7002,")
    assert settings.connect_tcp.bind == ["10.0.0.1:7001", "10.0.0.1:7002"]


def test_env_list_replaces_the_file_list(tmp_path: Path) -> None:
    write(tmp_path, "connect", '[connect_tcp]\nbind = ["a:1", "b:2", "c:3"]\n')
    assert load(tmp_path, GOCHAT_CONNECT_TCP__BIND="d:4").connect_tcp.bind == ["d:4"]


def test_env_override_keeps_the_other_file_keys_of_the_section(tmp_path: Path) -> None:
    write(tmp_path, "common", '[redis]\naddress = "r:1"\ndb = 2\n')
    settings = load(tmp_path, GOCHAT_REDIS__DB="5")
    assert settings.redis.address == "r:1"
    assert settings.redis.db == 5


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    settings = load(tmp_path, PATH="/bin", GOCHATX__API="x", HOME="/root")
    assert settings.api.bind == "127.0.0.1:7070"


def test_meta_variables_choose_files_and_are_not_keys(tmp_path: Path) -> None:
    write(tmp_path / "cfg", "api", '[api]\nbind = "9.9.9.9:9"\n')
    settings = load_settings(environ={"GOCHAT_ENV": "staging", "GOCHAT_CONFIG_DIR": str(tmp_path / "cfg")})
    assert settings.env == "staging"
    assert settings.api.bind == "9.9.9.9:9"
    assert settings.config_dir == str((tmp_path / "cfg").resolve())


def test_explicit_arguments_beat_meta_variables(tmp_path: Path) -> None:
    write(tmp_path / "a", "api", '[api]\nbind = "1.1.1.1:1"\n')
    write(tmp_path / "b", "api", '[api]\nbind = "2.2.2.2:2"\n')
    settings = load_settings(
        config_dir=tmp_path / "a",
        env="one",
        environ={"GOCHAT_ENV": "two", "GOCHAT_CONFIG_DIR": str(tmp_path / "b")},
    )
    assert settings.env == "one"
    assert settings.api.bind == "1.1.1.1:1"


def test_unknown_env_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, GOCHAT_API__PORT="7070")


def test_env_value_of_the_wrong_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, GOCHAT_CONNECT__BUCKETS="lots")


@pytest.mark.parametrize("name", ["GOCHAT_API__", "GOCHAT_API____BIND", "GOCHAT___BIND", "GOCHAT_"])
def test_malformed_env_variable_name_is_an_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="bad environment variable name"):
        load(tmp_path, **{name: "x"})


@pytest.mark.parametrize(
    "environ",
    [
        {"GOCHAT_API": "x", "GOCHAT_API__BIND": "1.1.1.1:1"},
        {"GOCHAT_API__BIND": "1.1.1.1:1", "GOCHAT_API": "x"},
    ],
)
def test_env_section_set_to_a_scalar_is_an_error(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(config_dir=tmp_path, env="t", environ=environ)


# --- derived values -----------------------------------------------------------------------------


def test_database_url_defaults_to_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    settings = load(tmp_path, GOCHAT_STATE_DIR=str(tmp_path / "st"))
    assert settings.state_path == (tmp_path / "st").resolve()
    assert settings.database_url == f"sqlite+aiosqlite:///{(tmp_path / 'st').resolve() / 'gochat.sqlite3'}"
    other = load(tmp_path, GOCHAT_LOGIC__DATABASE_URL="postgresql+asyncpg://u@h/db")
    assert other.database_url == "postgresql+asyncpg://u@h/db"


# --- split_host_port ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7070", ("127.0.0.1", 7070)),
        ("example.org:80", ("example.org", 80)),
        ("[::1]:7000", ("::1", 7000)),
        (":7070", ("0.0.0.0", 7070)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize("address", ["localhost", "localhost:", "host:http", "host:-1", ""])
def test_split_host_port_rejects_bad_addresses(address: str) -> None:
    with pytest.raises(ConfigError):
        split_host_port(address)


def test_split_host_port_rejects_a_port_out_of_range() -> None:
    # "a bad address is a ConfigError": 70000 is not a TCP port.
    with pytest.raises(ConfigError):
        split_host_port("127.0.0.1:70000")


# --- the repository's own configuration ---------------------------------------------------------


def test_repo_dev_config_loads() -> None:
    settings = load_settings(config_dir=PROJECT_ROOT / "config" / "dev", env="dev", environ={})
    assert settings.env == "dev"
    assert settings.api.bind == "127.0.0.1:7070"
    assert settings.connect_websocket.bind == "127.0.0.1:7000"
    assert settings.connect_websocket.path == "/ws"
    assert settings.site.bind == "127.0.0.1:8080"
    assert settings.connect_tcp.bind == ["127.0.0.1:7001", "127.0.0.1:7002"]
    for address in (settings.api.bind, settings.site.bind, settings.connect_websocket.bind):
        split_host_port(address)


def test_repo_prod_config_loads() -> None:
    settings = load_settings(config_dir=PROJECT_ROOT / "config" / "prod", env="prod", environ={})
    assert settings.env == "prod"
    assert split_host_port(settings.api.bind) == ("0.0.0.0", 7070)
    assert split_host_port(settings.connect_websocket.bind) == ("0.0.0.0", 7000)
    assert split_host_port(settings.site.bind) == ("0.0.0.0", 8080)
    assert [split_host_port(a)[1] for a in settings.connect_tcp.bind] == [7001, 7002]


def test_default_directory_is_the_projects_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config here, so the project's own is used
    settings = load_settings(environ={})
    assert settings.env == "dev"
    assert settings.config_dir == str((PROJECT_ROOT / "config" / "dev").resolve())
    assert settings.api.bind == "127.0.0.1:7070"


def test_default_directory_prefers_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "config" / "dev", "api", '[api]\nbind = "5.5.5.5:5"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).api.bind == "5.5.5.5:5"


def test_the_default_configuration_forgets_a_dead_connect_node_within_10_s() -> None:
    """Lease expiry + grace + one reaper sweep (README: about 10 s in all), with the files of every
    environment and with no file."""
    for env in ("dev", "prod"):
        settings = load_settings(env=env, environ={})
        worst = settings.etcd.lease_ttl + settings.logic.node_grace + SWEEP_INTERVAL
        assert worst <= 10, (env, settings.etcd.lease_ttl, settings.logic.node_grace)
    defaults = Settings()
    assert defaults.etcd.lease_ttl + defaults.logic.node_grace + SWEEP_INTERVAL <= 10


# --- TLS file sets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GOCHAT_RPC__TLS_CERT": "c.pem"}, "tls_cert is set but tls_key is not"),
        ({"GOCHAT_RPC__TLS_KEY": "k.pem"}, "tls_key is set but tls_cert is not"),
        ({"GOCHAT_RPC__TLS_CA": "ca.pem"}, "mutual TLS needs all three; tls_cert and tls_key not set"),
        ({"GOCHAT_RPC__TLS_CERT": "c.pem", "GOCHAT_RPC__TLS_KEY": "k.pem"}, "needs all three; tls_ca not set"),
        ({"GOCHAT_RPC__TLS_SERVER_NAME": "gochat.internal"}, "tls_server_name is set but TLS is not"),
        ({"GOCHAT_ETCD__TLS_CERT": "c.pem"}, "[etcd] tls_ca / tls_cert / tls_key"),
        (
            {"GOCHAT_ETCD__TLS_CERT": "c.pem", "GOCHAT_ETCD__TLS_KEY": "k.pem"},
            "[etcd] tls_cert and tls_key need tls_ca",
        ),
        ({"GOCHAT_REDIS__TLS_KEY": "k.pem"}, "[redis] tls_ca / tls_cert / tls_key"),
        ({"GOCHAT_REDIS__TLS_CERT": "c.pem", "GOCHAT_REDIS__TLS_KEY": "k.pem"}, "[redis] tls_cert and tls_key need"),
    ],
)
def test_half_a_tls_configuration_is_refused_naming_what_is_missing(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **environ)
    assert message in str(caught.value)


def test_complete_tls_configurations_load(tmp_path: Path) -> None:
    files = {"TLS_CA": "ca.pem", "TLS_CERT": "c.pem", "TLS_KEY": "k.pem"}
    environ = {
        f"GOCHAT_{section}__{key}": value for section in ("RPC", "ETCD", "REDIS") for key, value in files.items()
    }
    environ.update(GOCHAT_ETCD__TLS_CERT="", GOCHAT_ETCD__TLS_KEY="")
    settings = load(tmp_path, **environ)
    assert settings.rpc.tls and settings.rpc.tls_key == "k.pem"
    assert settings.etcd.tls_ca == "ca.pem" and not settings.etcd.tls_cert  # the CA alone: TLS without a client cert
    assert settings.redis.tls_cert == "c.pem"
    assert not load(tmp_path).rpc.tls


def test_a_tls_error_never_shows_the_section_s_password(tmp_path: Path) -> None:
    for section in ("ETCD", "REDIS"):
        secret = "s3cret-" + "x" * 40  # long: a truncated dump of the section would still show some
        environ = {f"GOCHAT_{section}__PASSWORD": secret, f"GOCHAT_{section}__TLS_CERT": "c.pem"}
        with pytest.raises(ConfigError) as caught:
            load(tmp_path, GOCHAT_ETCD__USERNAME="root", **environ)
        assert "tls_cert is set but tls_key is not" in str(caught.value)
        assert "s3cret" not in str(caught.value)
