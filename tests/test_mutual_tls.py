"""Mutual TLS against a real Pushgateway that requires a client certificate signed by the
test CA: JOBREPORT_CLIENT_CERT / JOBREPORT_CLIENT_KEY get the push in; without them, or with
files that cannot be read, the error is one clear line and no traceback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobreport import DeliveryError, load_config
from jobreport.exposition import text
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from tests.test_security import openssl, pki, tls_gateway  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def client_pki(pki: Path) -> Path:  # noqa: F811
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=jobreport client", cwd=pki)
    (pki / "client.cnf").write_text("basicConstraints=CA:FALSE\n"
                                    "keyUsage=critical,digitalSignature\n"
                                    "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client.cnf",
            cwd=pki)
    return pki


@pytest.fixture(scope="module")
def mtls_gateway(client_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway that requires a client certificate signed by the test CA."""
    yield from tls_gateway(client_pki, tmp_path_factory.mktemp("mtls-pg"), tls=f"""\
        client_auth_type: RequireAndVerifyClientCert
        client_ca_file: {client_pki / 'ca.crt'}
    """)


def _sink(url: str, tmp_path: Path, **settings: str) -> PushgatewaySink:
    config = load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                         instance="h1", timeout="5s", **settings)
    return PushgatewaySink(config, sleep=lambda _s: None)


def _push(sink: PushgatewaySink, budget: float = 10.0) -> None:
    sink.push_text("m", {"instance": "h1"},
                   text(GroupState(job="m", grouping={"job": "m"}, running=1)),
                   deadline=time.monotonic() + budget)


def test_a_client_certificate_gets_the_push_in(mtls_gateway: str, client_pki: Path,
                                               tmp_path: Path) -> None:
    sink = _sink(mtls_gateway, tmp_path, ca_bundle=str(client_pki / "ca.crt"),
                 client_cert=str(client_pki / "client.crt"),
                 client_key=str(client_pki / "client.key"))
    _push(sink)
    groups = sink.groups(deadline=time.monotonic() + 10)
    assert any(g.job == "m" for g in groups)


def test_without_a_client_certificate_the_gateway_refuses(mtls_gateway: str,
                                                          client_pki: Path,
                                                          tmp_path: Path) -> None:
    sink = _sink(mtls_gateway, tmp_path, ca_bundle=str(client_pki / "ca.crt"))
    with pytest.raises(DeliveryError) as raised:
        _push(sink, budget=2.0)
    assert "\n" not in str(raised.value)
    assert mtls_gateway in str(raised.value), str(raised.value)


def test_certificate_files_that_cannot_be_read_are_one_line(mtls_gateway: str,
                                                            client_pki: Path,
                                                            tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for cert in (missing, garbage):
        sink = _sink(mtls_gateway, tmp_path, ca_bundle=str(client_pki / "ca.crt"),
                     client_cert=str(cert))
        with pytest.raises(DeliveryError) as raised:
            _push(sink)
        message = str(raised.value)
        assert message.startswith("TLS error talking to the Pushgateway at"), message
        assert "cannot load the certificates" in message and "\n" not in message
        assert not raised.value.retryable
