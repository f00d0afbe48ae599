"""The SMTP sink saves every message it accepts as a complete `.eml` file, in arrival order."""

from __future__ import annotations

import email
import os
import signal
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from devhost.children import spawn_tied
from fakes.smtp_sink import SmtpSink
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]


def send(port: int, subject: str, to: str = "sales@localhost", bcc: str | None = None) -> None:
    message = EmailMessage()
    message["From"] = "leads@localhost"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Név: Zoë Ångström\nPhone: +44 20 7946 0958\n")
    recipients = [to] + ([bcc] if bcc else [])
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, to_addrs=recipients)


def test_a_sent_message_appears_as_an_eml_file_with_its_subject(tmp_path):
    with SmtpSink(tmp_path / "mail", port=0) as sink:
        send(sink.port, "New lead: Zoë Ångström")
        (path,) = wait_until(sink.messages, what="an .eml file")
    saved = email.message_from_bytes(path.read_bytes(), policy=default)
    assert path.suffix == ".eml"
    assert saved["Subject"] == "New lead: Zoë Ångström"
    assert "Zoë Ångström" in saved.get_content()
    assert saved["X-Envelope-To"] == "sales@localhost"


def test_bcc_recipients_are_kept_in_the_envelope_header(tmp_path):
    with SmtpSink(tmp_path, port=0) as sink:
        send(sink.port, "Daily digest", bcc="boss@localhost")
        (path,) = wait_until(sink.messages, what="an .eml file")
    saved = email.message_from_bytes(path.read_bytes(), policy=default)
    assert saved["X-Envelope-To"] == "sales@localhost, boss@localhost"
    assert saved["X-Envelope-From"] == "<leads@localhost>"


def test_file_names_sort_in_arrival_order_and_no_temporary_files_remain(tmp_path):
    with SmtpSink(tmp_path, port=0) as sink:
        for number in range(5):
            send(sink.port, f"lead {number}")
        wait_until(lambda: len(sink.messages()) == 5, what="five .eml files")
        paths = sink.messages()
    subjects = [email.message_from_bytes(p.read_bytes(), policy=default)["Subject"] for p in paths]
    assert subjects == [f"lead {n}" for n in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]


def test_python_m_devhost_smtp_sink_runs_until_sigterm(tmp_path):
    port = free_port()
    process = spawn_tied(
        [sys.executable, "-m", "fakes.smtp_sink", "--port", str(port), "--dir", str(tmp_path)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=20, what="the sink to listen")
        send(port, "via the command line")
        wait_until(lambda: list(tmp_path.glob("*.eml")), what="an .eml file")
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert f"127.0.0.1:{port}" in stdout
