"""Queue messages are measured in bytes as the service counts them: UTF-8, then base64 (64 KiB at most)."""

from __future__ import annotations

import base64
import json
import random
import zlib

import pytest

from shared.messaging.dead_letters import dead_letter_message, dead_letter_raw_body
from shared.messaging.messages import DeadLetter, DeadLetterInfo
from shared.messaging.sender import MAX_MESSAGE_BYTES, MessageTooLarge, QueueSender, encoded_size

CJK = "漢" * 16_500  # 16,500 characters: 49,500 UTF-8 bytes, 66,000 once base64-encoded (over 64 KiB)


def info() -> DeadLetterInfo:
    return DeadLetterInfo(reason="test", stage="webhook", error_type="Test")


def fits(letter: DeadLetter) -> bool:
    return encoded_size(letter.to_text()) <= MAX_MESSAGE_BYTES


def raw_body_of(letter: DeadLetter) -> bytes:
    assert letter.raw_body is not None
    if letter.raw_body_encoding == "zlib+base64":
        return zlib.decompress(base64.b64decode(letter.raw_body))
    return letter.raw_body.encode()


def test_encoded_size_is_the_base64_length_of_the_utf8_bytes():
    assert encoded_size("abc") == 4
    assert encoded_size("漢") == 4
    assert encoded_size(CJK) == len(base64.b64encode(CJK.encode()))


def test_a_raw_body_of_16_500_cjk_characters_is_kept_whole_within_one_queue_message():
    body = json.dumps({"message": CJK}, ensure_ascii=False).encode()
    letter = dead_letter_raw_body(info(), body)
    assert fits(letter)
    assert raw_body_of(letter) == body and not letter.raw_body_truncated


def test_a_raw_body_that_cannot_fit_even_compressed_is_cut_to_fit_and_says_so():
    body = random.Random(12).randbytes(300_000)  # zlib cannot shrink random bytes
    letter = dead_letter_raw_body(info(), body)
    assert fits(letter) and letter.raw_body_truncated
    assert body.startswith(raw_body_of(letter)) and letter.raw_body_size == len(body)


def test_a_dead_letter_message_too_big_for_the_queue_keeps_the_message_compressed():
    message = {"entry_id": "1", "change": {"field": "leadgen", "value": {"leadgen_id": "1", "note": CJK * 2}}}
    letter = dead_letter_message(info(), message)
    assert fits(letter)
    assert letter.message is None and json.loads(raw_body_of(letter)) == message


def test_a_small_dead_letter_message_is_kept_as_it_is():
    message = {"entry_id": "1", "change": {"field": 7}}
    letter = dead_letter_message(info(), message)
    assert letter.message == message and letter.raw_body is None


def test_the_sender_refuses_a_message_over_64_kib_before_calling_the_service():
    sender = QueueSender(
        "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA==;QueueEndpoint=http://127.0.0.1:9/x"
    )
    with pytest.raises(MessageTooLarge):
        sender.send("leads-inbound", "漢" * 16_400)
