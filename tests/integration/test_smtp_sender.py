"""The SMTP sender against real aiosmtpd servers on loopback: content, Bcc privacy, TLS + AUTH, failures.

Plain sends go to the devhost `SmtpSink`; STARTTLS and AUTH LOGIN go to an aiosmtpd `Controller`
with a throwaway self-signed certificate; failures come from servers that answer 451 or 550 on
purpose, a closed port, and a listener that never greets.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fakes.smtp_sink import SmtpSink
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendRejected
from shared.notify.smtp import SmtpSender

HOST = "127.0.0.1"
USER = "leads-agent"
PASSWORD = "correct horse battery staple"

LEAD_EMAIL = OutgoingEmail(
    subject="Nouveau lead : Zoë Müller",
    text="Zoë Müller (Köln) wants a quote — call before 18:00.",
    html="<p><b>Zoë Müller</b> (Köln) wants a quote — call before 18:00.</p>",
    to=("sales@example.com", "owner@example.com"),
    headers={"X-Lead-Id": "1234567890"},
)
DIGEST = OutgoingEmail(
    subject="Daily digest", text="3 leads", html="<p>3 leads</p>", bcc=("a@example.com", "b@example.com")
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Recorder:
    """aiosmtpd handler keeping each accepted message with its envelope and session facts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            {
                "recipients": list(envelope.rcpt_tos),
                "message": message_from_bytes(envelope.original_content, policy=policy.default),
                "tls": session.ssl is not None,
                "authenticated": session.authenticated,
            }
        )
        return "250 OK"


class RefusesAtMail(Recorder):
    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        return self.reply


class RefusesAtRcpt(RefusesAtMail):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        return self.reply


def start(handler: Recorder, **smtp_parameters: Any) -> Controller:
    controller = Controller(handler, hostname=HOST, port=free_port(), **smtp_parameters)
    controller.start()
    return controller


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "mail", HOST, 0) as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class OneUser:
    """aiosmtpd authenticator accepting `USER`/`PASSWORD` only; records the mechanisms clients used."""

    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@dataclass
class TlsServer:
    controller: Controller
    handler: Recorder
    authenticator: OneUser


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[TlsServer]:
    """STARTTLS required, AUTH only after TLS, LOGIN as the only mechanism, one valid user."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*certificate)
    handler, authenticator = Recorder(), OneUser()
    controller = start(
        handler,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
        auth_exclude_mechanism=["PLAIN"],
    )
    yield TlsServer(controller, handler, authenticator)
    controller.stop()


@pytest.fixture
def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def tls_sender(server: TlsServer, context: ssl.SSLContext, password: str = PASSWORD) -> SmtpSender:
    return SmtpSender(HOST, server.controller.port, USER, password, starttls=True, timeout=5, ssl_context=context)


def plain_sender(port: int, **options: Any) -> SmtpSender:
    return SmtpSender(HOST, port, starttls=False, timeout=5, **options)


def saved(sink: SmtpSink) -> list[EmailMessage]:
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in sink.messages()]


def body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content()).strip()


def test_sent_email_arrives_with_subject_both_parts_and_to_header_intact(sink: SmtpSink) -> None:
    message_id = plain_sender(sink.port, sender="leads@agent.example").send(LEAD_EMAIL)

    (message,) = saved(sink)
    assert message["Subject"] == LEAD_EMAIL.subject
    assert message["To"] == "sales@example.com, owner@example.com"
    assert message["From"] == "leads@agent.example"
    assert message["Message-ID"] == message_id
    assert message_id.endswith("@agent.example>")
    assert message["X-Lead-Id"] == "1234567890"
    assert message.get_content_type() == "multipart/alternative"
    assert body_text(message, "plain") == LEAD_EMAIL.text
    assert body_text(message, "html") == LEAD_EMAIL.html


def test_message_stays_seven_bit_so_no_server_needs_8bitmime(sink: SmtpSink) -> None:
    plain_sender(sink.port).send(LEAD_EMAIL)

    assert sink.messages()[0].read_bytes().isascii()


def test_bcc_only_email_reaches_envelope_recipients_without_bcc_or_to_header(sink: SmtpSink) -> None:
    plain_sender(sink.port).send(DIGEST)

    (path,) = sink.messages()
    (message,) = saved(sink)
    assert message["X-Envelope-To"] == "a@example.com, b@example.com"
    assert message["Bcc"] is None
    assert message["To"] is None
    as_sent = path.read_bytes().split(b"\r\n", 2)[2]  # what follows the sink's two X-Envelope lines
    assert b"a@example.com" not in as_sent


def test_headers_cannot_smuggle_a_bcc_header(sink: SmtpSink) -> None:
    sneaky = OutgoingEmail("Hi", "text", "<p>html</p>", to=("a@example.com",), headers={"Bcc": "spy@example.com"})

    plain_sender(sink.port).send(sneaky)

    (message,) = saved(sink)
    assert message["Bcc"] is None
    assert message["X-Envelope-To"] == "a@example.com"


def test_starttls_and_auth_login_deliver_over_an_encrypted_authenticated_session(
    tls_server: TlsServer, client_context: ssl.SSLContext
) -> None:
    tls_sender(tls_server, client_context).send(LEAD_EMAIL)

    assert tls_server.authenticator.mechanisms == ["LOGIN"]
    (received,) = tls_server.handler.received
    assert received["tls"] is True
    assert received["authenticated"] is True
    assert received["recipients"] == ["sales@example.com", "owner@example.com"]
    assert received["message"]["Subject"] == LEAD_EMAIL.subject


def test_wrong_password_raises_send_rejected(tls_server: TlsServer, client_context: ssl.SSLContext) -> None:
    with pytest.raises(SendRejected, match="authentication failed") as raised:
        tls_sender(tls_server, client_context, password="wrong").send(LEAD_EMAIL)

    assert "wrong" not in str(raised.value)
    assert tls_server.handler.received == []


def test_untrusted_server_certificate_raises_send_rejected(tls_server: TlsServer) -> None:
    with pytest.raises(SendRejected, match="certificate"):
        tls_sender(tls_server, ssl.create_default_context()).send(LEAD_EMAIL)


def test_server_down_raises_send_failed() -> None:
    with pytest.raises(SendFailed, match="unreachable"):
        plain_sender(free_port()).send(LEAD_EMAIL)


def test_server_that_never_greets_raises_send_failed_after_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind((HOST, 0))
        silent.listen()  # the kernel completes the handshake; nobody ever says 220
        sender = SmtpSender(HOST, silent.getsockname()[1], starttls=False, timeout=0.3)

        with pytest.raises(SendFailed, match="unreachable"):
            sender.send(LEAD_EMAIL)


def test_rate_limit_reply_at_rcpt_raises_sender_throttled_for_sixty_seconds() -> None:
    controller = start(RefusesAtRcpt("451 4.7.1 Too many messages, try again later"))
    try:
        with pytest.raises(SenderThrottled) as raised:
            plain_sender(controller.port).send(LEAD_EMAIL)
    finally:
        controller.stop()

    assert raised.value.retry_after == 60


def test_rate_limit_reply_at_mail_naming_seconds_waits_that_long() -> None:
    controller = start(RefusesAtMail("451 4.7.1 Rate limit exceeded, try again in 120 seconds"))
    try:
        with pytest.raises(SenderThrottled) as raised:
            plain_sender(controller.port).send(LEAD_EMAIL)
    finally:
        controller.stop()

    assert raised.value.retry_after == 120


def test_other_temporary_reply_raises_send_failed() -> None:
    controller = start(RefusesAtRcpt("450 4.2.1 Mailbox busy"))
    try:
        with pytest.raises(SendFailed, match="450"):
            plain_sender(controller.port).send(LEAD_EMAIL)
    finally:
        controller.stop()


def test_unknown_only_recipient_raises_send_rejected() -> None:
    controller = start(RefusesAtRcpt("550 5.1.1 No such user"))
    try:
        with pytest.raises(SendRejected, match="550"):
            plain_sender(controller.port).send(OutgoingEmail("Hi", "text", "<p>html</p>", to=("nobody@example.com",)))
    finally:
        controller.stop()


def test_check_reports_a_reachable_plain_server(sink: SmtpSink) -> None:
    assert plain_sender(sink.port).check() == f"smtp reachable: {HOST}:{sink.port}"
    assert sink.messages() == []


def test_check_performs_starttls_and_login(tls_server: TlsServer, client_context: ssl.SSLContext) -> None:
    status = tls_sender(tls_server, client_context).check()

    assert status == f"smtp reachable: {HOST}:{tls_server.controller.port}"
    assert tls_server.authenticator.mechanisms == ["LOGIN"]
    assert tls_server.handler.received == []


def test_check_with_wrong_password_raises_send_rejected(tls_server: TlsServer, client_context: ssl.SSLContext) -> None:
    with pytest.raises(SendRejected, match="535"):
        tls_sender(tls_server, client_context, password="wrong").check()


def test_check_with_server_down_raises_send_failed() -> None:
    with pytest.raises(SendFailed):
        plain_sender(free_port()).check()
