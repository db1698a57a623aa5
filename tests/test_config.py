"""Owners as the config spells them become the addresses mail is sent to: pure, no I/O."""

from __future__ import annotations

import pytest

from reporter.config import Config, parse_config, unique_owners


def config(*owners: str) -> Config:
    return parse_config(
        {
            "email": {"from": "reports@company.com"},
            "reports": [{"name": "marketing", "owners": list(owners)}],
        },
        source="test.toml",
    )


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        (["Ann <ann@x.com>", "ANN@X.COM"], ["ann@x.com"]),
        (["ANN@X.COM", "Ann <ann@x.com>"], ["ANN@x.com"]),
        (["ann@x.com", "bob@x.com", "Ann@x.com", "bob@X.com"], ["ann@x.com", "bob@x.com"]),
        (["ann@x.com", "bob@x.com"], ["ann@x.com", "bob@x.com"]),
    ],
)
def test_an_owner_listed_twice_is_kept_once_in_its_first_spelling(
    owners: list[str], expected: list[str]
) -> None:
    assert config(*owners).reports[0].owners == expected


def test_unique_owners_is_case_insensitive_and_keeps_order() -> None:
    assert unique_owners(["b@x.com", "A@x.com", "a@X.com", "B@x.com", "c@x.com"]) == [
        "b@x.com",
        "A@x.com",
        "c@x.com",
    ]


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ("ann@bücher.de", "ann@xn--bcher-kva.de"),
        ("Ann <ann@BÜCHER.de>", "ann@xn--bcher-kva.de"),
        ("jörg@example.com", "jörg@example.com"),  # a UTF-8 local part needs SMTPUTF8
        ("jörg@bücher.de", "jörg@xn--bcher-kva.de"),
    ],
)
def test_an_internationalised_domain_becomes_punycode(owner: str, expected: str) -> None:
    assert config(owner).reports[0].owners == [expected]


def test_the_same_domain_in_unicode_and_punycode_is_one_owner() -> None:
    assert config("ann@bücher.de", "ann@xn--bcher-kva.de").reports[0].owners == [
        "ann@xn--bcher-kva.de"
    ]
