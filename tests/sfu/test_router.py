"""The track router's rules, for every combination of moderator mode, shown set,
permission and subscriber (host or not). The media tests check the same rules on
what aiortc peers actually decode; these cover every case without media."""

from __future__ import annotations

import itertools

import pytest

from clinicconf.moderation import Member, Permission
from clinicconf.sfu.router import Route, routes

A, V = "audio", "video"
# In moderator mode, what a subscriber receives of a publisher, by the publisher's
# permission, whether the publisher is shown, and whether the subscriber is a host.
MODERATED: dict[tuple[Permission, bool, bool], set[str]] = {
    (Permission.AUDIO_VIDEO, True, False): {A, V},
    (Permission.AUDIO_VIDEO, False, False): {A},
    (Permission.AUDIO_VIDEO, True, True): {A, V},
    (Permission.AUDIO_VIDEO, False, True): {A, V},
    (Permission.AUDIO, True, False): {A},
    (Permission.AUDIO, False, False): {A},
    (Permission.AUDIO, True, True): {A},
    (Permission.AUDIO, False, True): {A},
    (Permission.VIDEO, True, False): {V},
    (Permission.VIDEO, False, False): set(),
    (Permission.VIDEO, True, True): {V},
    (Permission.VIDEO, False, True): {V},
    (Permission.NONE, True, False): set(),
    (Permission.NONE, False, False): set(),
    (Permission.NONE, True, True): set(),
    (Permission.NONE, False, True): set(),
}


@pytest.mark.parametrize(
    ("permission", "shown", "subscriber_is_host"),
    list(itertools.product(Permission, (True, False), (True, False))),
)
@pytest.mark.parametrize("moderated", [True, False])
def test_what_a_subscriber_receives_of_a_publisher(
    permission: Permission, shown: bool, subscriber_is_host: bool, moderated: bool
) -> None:
    publisher = Member("pub", host=False, permission=permission, shown=shown)
    subscriber = Member("sub", host=subscriber_is_host)
    received = {r.kind for r in routes([publisher, subscriber], moderated) if r.subscriber == "sub"}
    # Without moderator mode, everyone receives everything of everyone else.
    expected = MODERATED[(permission, shown, subscriber_is_host)] if moderated else {A, V}
    assert received == expected


def test_nobody_receives_their_own_media_and_everyone_else_is_served() -> None:
    people = [Member("a", host=True), Member("b", host=False), Member("c", host=False)]
    table = routes(people, moderated=False)
    assert len(table) == 3 * 2 * 2
    assert not any(r.publisher == r.subscriber for r in table)
    assert Route("b", "video", "c") in table


def test_no_one_present_means_no_routes() -> None:
    assert routes([], moderated=True) == frozenset()
    assert routes([Member("alone", host=True)], moderated=False) == frozenset()
