"""Which IP a request counts against: the front end's `client-ip`, never a header the client can write.

The App Service front end (which also fronts Functions) sets `client-ip` and overwrites any value
a client sent; `X-Forwarded-For` keeps whatever the client wrote, so it is never read.
"""

from __future__ import annotations

from shared.storage.ratelimit import client_ip, rate_bucket


def test_front_end_client_ip_with_port_is_stripped_to_the_address():
    assert client_ip({"client-ip": "203.0.113.7:51234"}) == "203.0.113.7"


def test_header_names_are_case_insensitive():
    assert client_ip({"Client-IP": "203.0.113.7:51234"}) == "203.0.113.7"
    assert client_ip({"CLIENT-IP": "203.0.113.7"}) == "203.0.113.7"


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


def test_x_forwarded_for_is_never_trusted():
    assert client_ip({"x-forwarded-for": "198.51.100.4"}) == "unknown"
    assert client_ip({"x-forwarded-for": "10.0.0.1, 172.16.0.2, 198.51.100.4:40000"}) == "unknown"


def test_a_caller_cannot_pick_its_bucket_by_writing_x_forwarded_for():
    first = client_ip({"x-forwarded-for": "1.1.1.1"}, remote_addr="192.0.2.10")
    second = client_ip({"x-forwarded-for": "2.2.2.2"}, remote_addr="192.0.2.10")
    assert first == second == "192.0.2.10"


def test_other_client_written_ip_headers_are_ignored():
    spoofable = {"x-client-ip": "1.1.1.1", "x-real-ip": "1.1.1.1", "true-client-ip": "1.1.1.1", "forwarded": "for=1"}
    assert client_ip(spoofable) == "unknown"


def test_garbage_is_unknown():
    assert client_ip({"client-ip": "not-an-ip:80"}) == "unknown"
    assert client_ip({"client-ip": "999.1.1.1"}) == "unknown"
    assert client_ip({"client-ip": "[2001:db8::7"}) == "unknown"
    assert client_ip({"client-ip": "203.0.113.7:http"}) == "unknown"


def test_garbage_front_end_value_does_not_fall_through_to_client_supplied_hops():
    assert client_ip({"client-ip": "garbage", "x-forwarded-for": "198.51.100.4"}) == "unknown"


def test_remote_addr_is_the_fallback_without_headers():
    assert client_ip({}, remote_addr="192.0.2.10") == "192.0.2.10"
    assert client_ip({"client-ip": " "}, remote_addr="[::1]:8080") == "::1"


def test_nothing_to_go_on_is_unknown():
    assert client_ip({}) == "unknown"
    assert client_ip({"client-ip": "  "}) == "unknown"


# The bucket a request counts against: an IPv6 /64 is one subscriber, so it is one bucket.


def test_ipv6_addresses_in_one_64_share_a_bucket():
    assert rate_bucket("2001:db8:1:2::7") == rate_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"


def test_another_ipv6_64_is_another_bucket():
    assert rate_bucket("2001:db8:1:3::7") != rate_bucket("2001:db8:1:2::7")


def test_an_ipv4_address_is_its_own_bucket():
    assert rate_bucket("203.0.113.7") == "203.0.113.7"
    assert rate_bucket("203.0.113.8") != rate_bucket("203.0.113.7")


def test_unknown_stays_one_shared_bucket():
    assert rate_bucket("unknown") == "unknown"
