"""Settings: precedence, durations, the TOML file, secrets, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobreport.config import Config, load_config
from jobreport.durations import format_duration, parse_duration
from jobreport.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("26h", 93600), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800),
     ("1w", 604800), ("45", 45), ("2.5", 2.5), (30, 30), (1.5, 1.5)],
)
def test_durations(text: str | float, seconds: float) -> None:
    """Prometheus-style durations and plain seconds are accepted."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1h1h", "30m1h", "-5", "5 m", "inf", "1.5.2s"])
def test_bad_durations(text: str) -> None:
    """Anything else is a ValueError that shows an example."""
    with pytest.raises(ValueError, match="1h30m"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    """format_duration writes what parse_duration reads."""
    for seconds in (0.5, 1, 90, 5400, 93600, 172800 + 61):
        assert parse_duration(format_duration(seconds)) == seconds


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    """flag > environment > file > default, and each value says where it came from."""
    toml = tmp_path / "jobreport.toml"
    toml.write_text('gateway = "http://file:9091"\nnamespace = "filens"\ntimeout = "7s"\n')
    env = {"JOBREPORT_CONFIG": str(toml), "JOBREPORT_GATEWAY": "http://env:9091",
           "JOBREPORT_TIMEOUT": "3s"}
    config = load_config(env=env, timeout="2s")
    assert config.timeout == 2 and config.sources["timeout"] == "flag"
    assert config.gateway == "http://env:9091"
    assert config.sources["gateway"] == "env JOBREPORT_GATEWAY"
    assert config.namespace == "filens" and config.sources["namespace"] == f"file {toml}"
    assert config.budget == 10 and config.sources["budget"] == "default"


def test_pushgateway_url_fallback() -> None:
    """PUSHGATEWAY_URL is honoured when JOBREPORT_GATEWAY is not set; a bare host works."""
    config = load_config(env={"PUSHGATEWAY_URL": "pg.example:9091"})
    assert config.gateway == "http://pg.example:9091"
    assert config.sources["gateway"] == "env PUSHGATEWAY_URL"
    assert load_config(env={"PUSHGATEWAY_URL": "x:1",
                            "JOBREPORT_GATEWAY": "http://y:2"}).gateway == "http://y:2"


def test_no_gateway_is_the_default() -> None:
    """Out of the box there is no gateway and the store is under XDG_STATE_HOME."""
    config = load_config(env={"XDG_STATE_HOME": "/srv/state", "XDG_CONFIG_HOME": "/nonexistent"})
    assert config.gateway is None
    assert config.db == "sqlite:////srv/state/jobreport/jobreport.db"


@pytest.mark.parametrize(
    ("env", "setting", "source"),
    [
        ({"JOBREPORT_GATEWAY": "ftp://x"}, "gateway", "env JOBREPORT_GATEWAY"),
        ({"JOBREPORT_GATEWAY": "http://x:notaport"}, "gateway", "env JOBREPORT_GATEWAY"),
        ({"JOBREPORT_TIMEOUT": "soon"}, "timeout", "env JOBREPORT_TIMEOUT"),
        ({"JOBREPORT_TIMEOUT": "0"}, "timeout", "env JOBREPORT_TIMEOUT"),
        ({"JOBREPORT_TLS_VERIFY": "maybe"}, "tls_verify", "env JOBREPORT_TLS_VERIFY"),
        ({"JOBREPORT_LABELS": "novalue"}, "labels", "env JOBREPORT_LABELS"),
        ({"JOBREPORT_LABELS": "job=x"}, "labels", "env JOBREPORT_LABELS"),
        ({"JOBREPORT_NAMESPACE": "9lives"}, "namespace", "env JOBREPORT_NAMESPACE"),
        ({"JOBREPORT_PASSWORD_FILE": "/nonexistent/pw"}, "password_file",
         "env JOBREPORT_PASSWORD_FILE"),
        ({"JOBREPORT_CONFIG": "/nonexistent.toml"}, "config_file", "env JOBREPORT_CONFIG"),
    ],
)
def test_bad_value_names_setting_and_source(env: dict[str, str], setting: str,
                                            source: str) -> None:
    """One clear error names the setting and where its value came from."""
    with pytest.raises(ConfigError) as raised:
        load_config(env=env)
    assert raised.value.setting == setting
    assert raised.value.source == source
    assert "\n" not in str(raised.value)


def test_lenient_mode_warns_and_uses_defaults(caplog: pytest.LogCaptureFixture) -> None:
    """strict=False (a job must run anyway): bad values are warned about and dropped."""
    config = load_config(env={"JOBREPORT_GATEWAY": "ftp://x", "JOBREPORT_TIMEOUT": "soon"},
                         strict=False)
    assert config.gateway is None and config.timeout == 5
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


def test_toml_jobs_and_labels(tmp_path: Path) -> None:
    """Per-job sections give expect_every, max_runtime, grace and labels."""
    toml = tmp_path / "c.toml"
    toml.write_text(
        'labels = { team = "data" }\n'
        '[jobs.backup]\nexpect_every = "24h"\nmax_runtime = "2h"\ngrace = "1h"\n'
        'labels = { db = "main" }\n'
    )
    config = load_config(env={"JOBREPORT_CONFIG": str(toml)}, instance="h")
    job = config.job("backup")
    assert (job.expect_every, job.max_runtime, job.grace) == (86400, 7200, 3600)
    assert config.grouping("backup") == {"job": "backup", "instance": "h", "team": "data",
                                         "db": "main"}
    assert config.job("other").expect_every is None


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ('gatewy = "x"', "gatewy"),
        ('password = "x"', "password"),
        ('[jobs.b]\nexpect_every = "often"', "jobs.b.expect_every"),
        ('[jobs.b]\nschedule = "daily"', "jobs.b.schedule"),
        ("not toml [", "config_file"),
    ],
)
def test_bad_toml(tmp_path: Path, text: str, setting: str) -> None:
    """Typos, secrets in the file and bad values in job sections are clear errors."""
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(env={"JOBREPORT_CONFIG": str(toml)})
    assert raised.value.setting == setting


def test_xdg_config_file_is_found(tmp_path: Path) -> None:
    """Without JOBREPORT_CONFIG the file under XDG_CONFIG_HOME is read."""
    (tmp_path / "jobreport").mkdir()
    (tmp_path / "jobreport" / "jobreport.toml").write_text('namespace = "xdg"\n')
    assert load_config(env={"XDG_CONFIG_HOME": str(tmp_path)}).namespace == "xdg"


def test_secrets_from_env_or_file_and_never_in_repr(tmp_path: Path) -> None:
    """Passwords and tokens come from the environment or a file and are not printed."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret-from-file\n")
    config = load_config(env={"JOBREPORT_USERNAME": "ops", "JOBREPORT_PASSWORD_FILE": str(pw),
                              "JOBREPORT_TOKEN": "tok-secret"})
    assert config.password == "s3cret-from-file"
    assert config.token == "tok-secret"
    assert "s3cret" not in repr(config) and "tok-secret" not in repr(config)
    assert "s3cret" not in str(config.sources)
    # the sinks' settings, and a record printed or formatted into a log line, alike
    for shown in (repr(config.sinks), str(config), f"{config.sinks}", "%s" % (config,)):
        assert "s3cret" not in shown and "tok-secret" not in shown, shown
        assert "username='ops'" in shown, shown


def test_secrets_cannot_be_flags() -> None:
    """There is no flag-level override for a password or a token."""
    with pytest.raises(TypeError):
        load_config(env={}, password="x")


def test_no_instance_and_instance() -> None:
    """The instance defaults to the host name, can be set, and can be dropped."""
    import socket

    assert load_config(env={}).instance == socket.gethostname()
    assert load_config(env={"JOBREPORT_INSTANCE": "web1"}).instance == "web1"
    assert load_config(env={"JOBREPORT_NO_INSTANCE": "1"}).instance is None
    assert "instance" not in load_config(env={}, no_instance=True).grouping("j")


def test_in_a_kubernetes_pod_the_default_is_no_instance(tmp_path: Path) -> None:
    """With KUBERNETES_SERVICE_HOST set and no instance configured, a job has one group and
    not one per pod (the pod's host name is new every run); the source says why. An
    instance set anywhere (flag, environment, config file) or --no-instance still wins."""
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    config = load_config(env=pod)
    assert config.instance is None
    assert config.grouping("backup") == {"job": "backup"}
    assert "Kubernetes" in config.sources["instance"]
    assert "KUBERNETES_SERVICE_HOST" in config.sources["instance"]
    assert load_config(env=pod, instance="web1").instance == "web1"
    assert load_config(env={**pod, "JOBREPORT_INSTANCE": "web2"}).instance == "web2"
    toml = tmp_path / "jobreport.toml"
    toml.write_text('instance = "from-file"\n')
    assert load_config(env={**pod, "JOBREPORT_CONFIG": str(toml)}).instance == "from-file"
    assert load_config(env={**pod, "JOBREPORT_NO_INSTANCE": "1"}).instance is None
    assert load_config(env={"KUBERNETES_SERVICE_HOST": ""}).instance is not None
    assert load_config(env={}).sources["instance"] == "default (host name)"


def test_plain_path_is_a_sqlite_store(tmp_path: Path) -> None:
    """JOBREPORT_DB may be a plain file path."""
    assert load_config(env={"JOBREPORT_DB": str(tmp_path / "x.db")}).db == \
        f"sqlite:///{tmp_path / 'x.db'}"


def test_credentials_in_the_gateway_url_become_basic_auth() -> None:
    """user:password@ in the URL moves into username/password; the URL never shows them."""
    config = load_config(env={"JOBREPORT_GATEWAY": "https://ops:p%40ss@pg.example:9091/"})
    assert config.gateway == "https://pg.example:9091"
    assert (config.username, config.password) == ("ops", "p@ss")
    assert "p@ss" not in repr(config) and "p%40ss" not in repr(config)
    explicit = load_config(env={"JOBREPORT_GATEWAY": "http://u:url-pw@h:1",
                                "JOBREPORT_PASSWORD": "env-pw"})
    assert explicit.password == "env-pw"


def test_a_config_crosses_to_another_process_and_its_defaults_are_read_only() -> None:
    """A Config pickles and deep-copies (handed to a worker process), equal to itself, its
    secrets kept; an unset mapping (labels, jobs) is read-only, so that no config can change
    what another one holds."""
    import copy
    import pickle

    config = load_config(env={"JOBREPORT_TOKEN": "tok-secret",
                              "JOBREPORT_GATEWAY": "http://127.0.0.1:9"})
    for other in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config),
                  pickle.loads(pickle.dumps(Config(labels={"team": "a"})))):
        assert type(other) is Config and other.sinks == type(other)(**other._asdict()).sinks
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(config)).token == "tok-secret"
    assert hash(config.sinks) == hash(pickle.loads(pickle.dumps(config)).sinks)
    with pytest.raises(TypeError):
        Config().labels["team"] = "b"  # type: ignore[index]
    assert dict(Config().labels) == {} and dict(Config().jobs) == {}
