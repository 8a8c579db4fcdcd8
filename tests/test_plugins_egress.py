"""The egress policy every outbound call of a source or channel obeys: one test per kind
of refusal (link-local, metadata address, metadata host name, private range, redirect
to a refused address, oversized answer, slow answer), against real servers on loopback.

The suite allows loopback egress (tests/conftest.py); these tests build their policies
explicitly, so they see the default: only public addresses."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from goalledger.plugins import ChannelError, SourceError
from goalledger.plugins.channels import SlackChannel, SlackConfig, WebhookChannel, WebhookConfig
from goalledger.plugins.channels_email import EmailChannel, EmailConfig
from goalledger.plugins.egress import EgressPolicy, EgressRefused, get_ok, request
from goalledger.plugins.fetch import FetchFailed
from goalledger.plugins.testkit import SourceHarness, local_http_server, make_notification

pytest_plugins = ["goalledger.plugins.testing"]

DEFAULT = EgressPolicy.from_env({})  # what a process with no GOALLEDGER_EGRESS_* gets
LOCAL = EgressPolicy(allow=(ipaddress.ip_network("127.0.0.1/32"),))  # 127.0.0.1 only
EVERYTHING = EgressPolicy(
    loopback=True, private=True, allow=(ipaddress.ip_network("0.0.0.0/0"),)
)  # the most permissive configuration there is
OK = (200, {"Content-Type": "application/json"}, b'{"value": 7}')


def refused(policy: EgressPolicy, address: str) -> str:
    """The message of the refusal; an IP literal "resolves" without any network."""
    with pytest.raises(EgressRefused) as caught:
        policy.resolve(address, 80)
    return str(caught.value)


def test_the_default_allows_public_addresses_only() -> None:
    assert EgressPolicy() == DEFAULT and not DEFAULT.loopback and not DEFAULT.private
    assert DEFAULT.refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert DEFAULT.refusal(ipaddress.ip_address("2606:2800:220:1::1")) is None
    assert DEFAULT.refusal(ipaddress.ip_address("127.0.0.1")) == "is a loopback address"
    assert DEFAULT.refusal(ipaddress.ip_address("::1")) == "is a loopback address"
    with local_http_server(lambda e: OK) as server:
        with pytest.raises(EgressRefused, match=r"\(127\.0\.0\.1\) refused: is a loopback"):
            get_ok(server.url, policy=DEFAULT)
        assert get_ok(server.url, policy=LOCAL).body == b'{"value": 7}'
    assert len(server.received) == 1  # the refused call never connected


@pytest.mark.parametrize("address", ["169.254.10.1", "169.254.0.1", "fe80::1", "fe80::abcd%1"])
def test_link_local_is_refused_even_when_allowed(address: str) -> None:
    for policy in (
        DEFAULT,
        EVERYTHING,
        EgressPolicy(allow=(ipaddress.ip_network("169.254.0.0/16"),)),
    ):
        assert "is link-local" in refused(policy, address.split("%")[0])


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_cloud_metadata_addresses_are_refused_whatever_the_configuration(address: str) -> None:
    assert "is a cloud metadata address" in refused(DEFAULT, address)
    assert "is a cloud metadata address" in refused(EVERYTHING, address)


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.google.internal.", "metadata", "instance-data"]
)
def test_cloud_metadata_host_names_are_refused_before_any_lookup(host: str) -> None:
    with pytest.raises(EgressRefused, match="is a cloud metadata host name"):
        get_ok(f"http://{host}/computeMetadata/v1/", policy=EVERYTHING, timeout=1)


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "fc00::1", "fd12:3456::1"]
)
def test_private_ranges_are_refused_unless_configured(address: str) -> None:
    assert "is in a private range" in refused(DEFAULT, address)
    network = ipaddress.ip_network(address)
    assert EgressPolicy(allow=(network,)).resolve(address, 80) == address
    assert EgressPolicy(private=True).resolve(address, 80) == address
    # deny wins over everything else
    assert "is in a denied network" in refused(EgressPolicy(private=True, deny=(network,)), address)


def test_other_non_public_ranges_are_refused_unless_configured() -> None:
    assert "is not a public address" in refused(DEFAULT, "100.64.0.1")  # carrier-grade NAT
    assert EgressPolicy(private=True).resolve("100.64.0.1", 80) == "100.64.0.1"


def test_the_policy_comes_from_the_environment() -> None:
    policy = EgressPolicy.from_env(
        {"GOALLEDGER_EGRESS_ALLOW": "10.1.0.0/16, 127.0.0.1/32", "GOALLEDGER_EGRESS_DENY": ""}
    )
    assert policy.resolve("10.1.2.3", 80) == "10.1.2.3"
    assert "is in a private range" in refused(policy, "10.2.0.1")
    assert policy.resolve("127.0.0.1", 80) == "127.0.0.1"
    assert "is a loopback address" in refused(policy, "127.0.0.2")
    opened = EgressPolicy.from_env(
        {"GOALLEDGER_EGRESS_LOOPBACK": "allow", "GOALLEDGER_EGRESS_PRIVATE": "ALLOW"}
    )
    assert opened.loopback and opened.private
    with pytest.raises(SourceError, match=r"GOALLEDGER_EGRESS_ALLOW: .*does not appear"):
        EgressPolicy.from_env({"GOALLEDGER_EGRESS_ALLOW": "10.0.0.0/33"})
    with pytest.raises(SourceError, match="GOALLEDGER_EGRESS_LOOPBACK must be allow or deny"):
        EgressPolicy.from_env({"GOALLEDGER_EGRESS_LOOPBACK": "yes"})


def test_a_redirect_to_a_refused_address_is_refused() -> None:
    with (
        local_http_server(lambda e: OK, host="127.0.0.2") as elsewhere,
        local_http_server(
            lambda e: (
                (302, {"Location": f"{elsewhere.url}/x"}, b"")
                if e.path == "/away"
                else (307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
                if e.path == "/metadata"
                else (301, {"Location": "/final"}, b"")
                if e.path == "/moved"
                else OK
            )
        ) as server,
    ):
        # followed within the policy, the token kept on the same origin
        moved = get_ok(f"{server.url}/moved", headers={"Authorization": "Bearer t"}, policy=LOCAL)
        assert moved.body == b'{"value": 7}'
        assert [(e.path, e.headers.get("Authorization")) for e in server.received] == [
            ("/moved", "Bearer t"),
            ("/final", "Bearer t"),
        ]
        with pytest.raises(
            EgressRefused, match=r"127\.0\.0\.2 \(127\.0\.0\.2\) refused: is a loop"
        ):
            get_ok(f"{server.url}/away", policy=LOCAL)
        with pytest.raises(EgressRefused, match="is a cloud metadata address"):
            get_ok(f"{server.url}/metadata", policy=EVERYTHING)
        assert elsewhere.received == []  # the refused target was never contacted
        # allowed elsewhere: followed, but the credentials stay with their origin
        both = EgressPolicy(loopback=True)
        get_ok(f"{server.url}/away", headers={"Authorization": "Bearer t"}, policy=both)
        assert "Authorization" not in elsewhere.received[0].headers
        # a POST (a channel) never follows a redirect
        with pytest.raises(SourceError, match=r"redirected to http://127\.0\.0\.1:\d+/final \(not"):
            request("POST", f"{server.url}/moved", body=b"{}", policy=LOCAL)


def test_endless_redirects_stop() -> None:
    with (
        local_http_server(lambda e: (302, {"Location": e.path + "x"}, b"")) as server,
        pytest.raises(SourceError, match="more than 5 redirects"),
    ):
        get_ok(f"{server.url}/", policy=LOCAL)
    assert len(server.received) == 6


@contextmanager
def raw_server(reply: bytes, *, trickle: float | None = None) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with `reply` (all at
    once, or one byte every `trickle` seconds), then closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def answer(connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                if trickle is None:
                    connection.sendall(reply)
                    return
                for byte in reply:
                    if stop.wait(trickle):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:
                pass  # the client gave up: that is the point

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_an_oversized_answer_is_refused() -> None:
    big = b"x" * 2_000
    with local_http_server(lambda e: (200, {}, big)) as server:
        assert len(get_ok(server.url, max_bytes=2_000, policy=LOCAL).body) == 2_000
        with pytest.raises(SourceError, match=r"answered more than 1000 bytes \(2000\)"):
            get_ok(server.url, max_bytes=1_000, policy=LOCAL)
    # no Content-Length: the body is read up to the limit, then refused
    undeclared = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 5_000_000
    with (
        raw_server(undeclared) as url,
        pytest.raises(SourceError, match="answered more than 1000 bytes"),
    ):
        get_ok(url, max_bytes=1_000, policy=LOCAL)


def test_an_oversized_answer_fails_the_source(goalledger_harness: SourceHarness) -> None:
    with local_http_server(lambda e: (200, {}, b"[" + b"1," * 600 + b"1]")) as server:
        kpi_id = goalledger_harness.define_kpi("http-json", {"url": server.url, "max_bytes": 1000})
        with pytest.raises(FetchFailed) as caught:
            goalledger_harness.fetch(kpi_id)
    assert "answered more than 1000 bytes" in (caught.value.health.last_error or "")


def test_a_slow_answer_times_out() -> None:
    def slow(exchange: object) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.5)
        return OK

    with local_http_server(slow) as server:
        began = time.monotonic()
        with pytest.raises(SourceError, match=r"did not answer within 0\.3s"):
            get_ok(server.url, timeout=0.3, policy=LOCAL)
        assert time.monotonic() - began < 1.2


def test_a_trickled_answer_times_out_as_a_whole() -> None:
    """Each byte comes well within the timeout, but the answer as a whole does not."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"7" * 200
    with raw_server(answer, trickle=0.02) as url:
        began = time.monotonic()
        with pytest.raises(SourceError, match=r"did not answer within 0\.5s"):
            get_ok(url, timeout=0.5, policy=LOCAL)
        assert time.monotonic() - began < 1.5


SMTP: dict[str, Any] = {"sender": "a@example.com", "to": ["b@example.com"]}


@pytest.mark.parametrize(
    ("plugin", "config"),
    [
        ("http-json", {"url": "http://169.254.169.254/latest/meta-data/"}),
        ("csv", {"url": "http://[fd00:ec2::254]/x.csv", "date_column": "d", "value_column": "v"}),
        ("prometheus", {"url": "http://metadata.google.internal", "query": "up"}),
    ],
)
def test_every_source_that_calls_urls_obeys_the_policy(
    goalledger_harness: SourceHarness, plugin: str, config: dict
) -> None:
    kpi_id = goalledger_harness.define_kpi(plugin, config)
    with pytest.raises(FetchFailed) as caught:
        goalledger_harness.fetch(kpi_id)
    assert "refused: is a cloud metadata" in (caught.value.health.last_error or "")


@pytest.mark.parametrize(
    ("channel", "config", "why"),
    [
        (WebhookChannel(), WebhookConfig(url="http://10.0.0.5/hook", secret="s" * 16), "private"),
        (SlackChannel(), SlackConfig(webhook_url="http://169.254.169.254/x"), "cloud metadata"),
        (EmailChannel(), EmailConfig(host="169.254.1.1", **SMTP), "link-local"),
        (EmailChannel(), EmailConfig(host="metadata.google.internal", **SMTP), "cloud metadata"),
    ],
)
def test_every_channel_that_calls_out_obeys_the_policy(channel: Any, config: Any, why: str) -> None:
    with pytest.raises(ChannelError, match=f"refused: .*{why}"):
        channel.send(config, make_notification())


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for `localhost`,
    trusted through SSL_CERT_FILE; yields its https://localhost:PORT URL."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with local_http_server(lambda e: OK) as server:
        port = int(server.url.rsplit(":", 1)[1])
        forward = socket.create_server(("127.0.0.1", 0))
        forward.settimeout(0.1)
        stop = threading.Event()

        def relay(client: socket.socket) -> None:
            # TLS terminated here, the plain request passed on to the HTTP server
            try:
                with client, context.wrap_socket(client, server_side=True) as tls:
                    request = tls.recv(65536)
                    with socket.create_connection(("127.0.0.1", port)) as upstream:
                        upstream.sendall(request)
                        while chunk := upstream.recv(65536):
                            tls.sendall(chunk)
            except OSError:  # a client that refused the certificate hung up
                pass

        def serve() -> None:
            while not stop.is_set():
                try:
                    client, _ = forward.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=relay, args=(client,), daemon=True).start()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield f"https://localhost:{forward.getsockname()[1]}"
        finally:
            stop.set()
            thread.join(5)
            forward.close()


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(
    tls_server: str,
) -> None:
    assert get_ok(f"{tls_server}/x", policy=EgressPolicy(loopback=True)).body == b'{"value": 7}'
    with pytest.raises(EgressRefused, match="is a loopback address"):
        get_ok(tls_server, policy=DEFAULT)  # localhost resolves to loopback: refused
    ip_url = tls_server.replace("localhost", "127.0.0.1")
    with pytest.raises(SourceError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
        get_ok(ip_url, policy=EgressPolicy(loopback=True))  # the name is what is verified
