"""The SMTP sender: one connection per email, STARTTLS and AUTH when configured, replies classified once.

Each email is a `multipart/alternative` message (plain text first, then HTML) with 7-bit-safe
encodings, so no server needs `8BITMIME`. Bcc recipients travel in the envelope only; the message
never carries a `Bcc` header. Reply codes map to the sender errors: rate-limit 4xx replies wait
(`SenderThrottled`), other 4xx and lost connections retry (`SendFailed`), 5xx and authentication
failures are final (`SendRejected`). Message content and the password are never logged.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from shared.errors import LeadAgentError
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendRejected

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0
THROTTLE_CODES = frozenset({421, 450, 451, 452})
_RATE_WORDS = re.compile(r"rate|too many|try again later|throttl", re.IGNORECASE)
_DELAY = re.compile(r"(\d+)\s*(seconds?|secs?|s|minutes?|mins?)\b", re.IGNORECASE)
# 7-bit transfer encodings (quoted-printable for non-ASCII text) and CRLF line ends, RFC 5322 headers.
_POLICY = policy.SMTP.clone(cte_type="7bit")
# Headers the sender writes itself; `OutgoingEmail.headers` cannot override them (nor add a Bcc).
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


class SmtpSender:
    """Sends through an SMTP relay (Office 365, SendGrid, a local sink); returns the Message-ID."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = 10.0,
        sender: str = "leads@example.com",
        name: str = "smtp",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self.sender = sender
        self.name = name
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpSender({self.host}:{self.port}, user={self.username!r}, starttls={self.starttls})"

    def send(self, email: OutgoingEmail) -> str:
        """Deliver `email` to the relay; return its Message-ID once the relay accepted the data."""
        if email.recipient_count == 0:
            raise SendRejected("email has no recipients")
        try:
            message = self._message(email)
        except ValueError as exc:  # e.g. a header value with a line break
            raise SendRejected(f"email cannot be built: {exc}") from exc
        try:
            with self._session() as client:
                refused = client.send_message(message, from_addr=self.sender, to_addrs=[*email.to, *email.bcc])
        except (smtplib.SMTPException, OSError) as exc:
            raise _classified(exc) from exc
        message_id = str(message["Message-ID"])
        if refused:
            codes = sorted({code for code, _ in refused.values()})
            logger.warning(
                "smtp refused %d of %d recipient(s) of %s (codes %s)",
                len(refused),
                email.recipient_count,
                message_id,
                codes,
            )
        logger.info("smtp accepted %s for %d recipient(s)", message_id, email.recipient_count - len(refused))
        return message_id

    def check(self) -> str:
        """Connect, greet, STARTTLS and log in as configured, then QUIT; send nothing."""
        try:
            with self._session():
                pass
        except (smtplib.SMTPException, OSError) as exc:
            raise _classified(exc) from exc
        return f"smtp reachable: {self.host}:{self.port}"

    @contextmanager
    def _session(self) -> Iterator[smtplib.SMTP]:
        """An SMTP session ready for MAIL FROM; QUIT on success, dropped on any error."""
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.starttls:
                client.starttls(context=self._ssl_context or ssl.create_default_context())
                client.ehlo()
            if self.username:
                client.login(self.username, self._password)
            yield client
        except BaseException:
            client.close()
            raise
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def _message(self, email: OutgoingEmail) -> EmailMessage:
        message = EmailMessage(policy=_POLICY)
        message["From"] = self.sender
        if email.to:
            message["To"] = ", ".join(email.to)
        message["Subject"] = email.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        for header, value in email.headers.items():
            if header.lower() not in _OWN_HEADERS:
                message[header] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message


def _classified(exc: smtplib.SMTPException | OSError) -> LeadAgentError:
    """The sender error for an smtplib or socket error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        transient = [(code, text) for code, text in replies if 400 <= code < 500]
        if transient:
            return _from_reply(*transient[0])
        code, text = replies[0] if replies else (550, b"")
        return SendRejected(f"smtp refused every recipient: {code} {_text(text)}")
    if isinstance(exc, smtplib.SMTPAuthenticationError) and exc.smtp_code >= 500:
        return SendRejected(f"smtp authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPResponseException):  # MAIL, DATA, greeting, EHLO, 4xx AUTH replies
        return _from_reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendRejected(f"smtp server lacks a required extension: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SendRejected(f"smtp server certificate not trusted: {exc.verify_message}")
    return SendFailed(f"smtp unreachable: {type(exc).__name__}: {exc}")


def _from_reply(code: int, raw_text: bytes | str) -> LeadAgentError:
    text = _text(raw_text)
    if code in THROTTLE_CODES and _RATE_WORDS.search(text):
        return SenderThrottled(f"smtp throttled: {code} {text}", _retry_after(text))
    if 500 <= code < 600:
        return SendRejected(f"smtp refused: {code} {text}")
    return SendFailed(f"smtp answered {code} {text}")


def _retry_after(text: str) -> float:
    """Seconds the reply asks to wait ("try again in 30 seconds", "5 minutes"); 60 when it names none."""
    match = _DELAY.search(text)
    if match is None:
        return DEFAULT_RETRY_AFTER
    amount = float(match.group(1))
    return amount * 60 if match.group(2).lower().startswith("m") else amount


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
