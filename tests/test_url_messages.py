"""Refusals say what the code accepts: pasted references take http:// or https://, results
only https://."""

from __future__ import annotations

import pytest

from studio.netguard import UnsafeUrlError, check_public_url
from studio.reference_host import check_reference_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://example.com/a.png", "ftp:"),
        ("file:///etc/passwd", "file:"),
        ("example.com/a.png", "a URL without a scheme"),
    ],
)
def test_a_reference_link_refusal_names_both_accepted_schemes(url: str, shown: str) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_reference_url(url)
    assert str(caught.value) == f"only http:// or https:// links can be used, not {shown}"


def test_http_references_are_indeed_accepted() -> None:
    assert check_reference_url("http://example.com/a.png") == "http://example.com/a.png"


def test_where_only_https_is_accepted_the_refusal_says_so() -> None:
    with pytest.raises(UnsafeUrlError, match=r"^only https:// links can be used, not ftp:$"):
        check_public_url("ftp://example.com/a.png")
    with pytest.raises(
        UnsafeUrlError, match=r"^only https:// links can be used here, not http://$"
    ):
        check_public_url("http://example.com/a.png")
