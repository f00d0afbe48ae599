"""Which IP a request counts against: the front end's value, never a hop the client wrote."""

from __future__ import annotations

from shared.ratelimit import client_ip


def test_front_end_client_ip_with_port_is_stripped_to_the_address():
    assert client_ip({"client-ip": "203.0.113.7:51234"}) == "203.0.113.7"


def test_header_names_are_case_insensitive():
    assert client_ip({"Client-IP": "203.0.113.7:51234"}) == "203.0.113.7"
    assert client_ip({"X-FORWARDED-FOR": "198.51.100.4"}) == "198.51.100.4"


def test_bracketed_ipv6_with_port_is_stripped_to_the_address():
    assert client_ip({"client-ip": "[2001:db8::7]:51234"}) == "2001:db8::7"


def test_bare_ipv6_is_kept_whole():
    assert client_ip({"client-ip": "2001:db8::7"}) == "2001:db8::7"


def test_ipv6_spellings_of_one_address_share_one_bucket():
    assert client_ip({"client-ip": "2001:0DB8:0000::0007"}) == "2001:db8::7"


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address():
    assert client_ip({"client-ip": "[::ffff:203.0.113.7]:443"}) == "203.0.113.7"


def test_front_end_client_ip_wins_over_x_forwarded_for():
    assert client_ip({"client-ip": "203.0.113.7:1", "x-forwarded-for": "198.51.100.4"}) == "203.0.113.7"


def test_x_forwarded_for_list_takes_the_right_most_hop():
    assert client_ip({"x-forwarded-for": "10.0.0.1, 172.16.0.2, 198.51.100.4:40000"}) == "198.51.100.4"


def test_spoofed_left_most_x_forwarded_for_entry_is_ignored():
    spoofed = {"x-forwarded-for": "1.1.1.1, 198.51.100.4"}
    assert client_ip(spoofed) == "198.51.100.4"
    assert client_ip({"x-forwarded-for": "1.1.1.1, 198.51.100.99"}) != client_ip(spoofed)


def test_garbage_is_unknown():
    assert client_ip({"client-ip": "not-an-ip:80"}) == "unknown"
    assert client_ip({"client-ip": "999.1.1.1"}) == "unknown"
    assert client_ip({"client-ip": "[2001:db8::7"}) == "unknown"
    assert client_ip({"client-ip": "203.0.113.7:http"}) == "unknown"
    assert client_ip({"x-forwarded-for": "198.51.100.4, <script>"}) == "unknown"


def test_garbage_front_end_value_does_not_fall_through_to_client_supplied_hops():
    assert client_ip({"client-ip": "garbage", "x-forwarded-for": "198.51.100.4"}) == "unknown"


def test_remote_addr_is_the_fallback_without_headers():
    assert client_ip({}, remote_addr="192.0.2.10") == "192.0.2.10"
    assert client_ip({"x-forwarded-for": " , "}, remote_addr="[::1]:8080") == "::1"


def test_nothing_to_go_on_is_unknown():
    assert client_ip({}) == "unknown"
    assert client_ip({"client-ip": "  "}) == "unknown"
