"""A server killed outright (SIGKILL) in the middle of a moderated conference, and
started again: the pages reconnect, and everyone is back in the conference within
seconds, with the same roles, the moderator's choices and who is kept out."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType

from clinicconf.bench.server import bench_settings, running_server, schedule_conference
from clinicconf.conference.identity import Closing
from clinicconf.db import BUSY_TIMEOUT_MS
from clinicconf.sfu import ice
from clinicconf.web.protocol import close_code

from ...support.media_peers import MediaParticipant, enter, introduce
from ...support.servers import hold_database, wait_until


async def test_a_conference_is_taken_up_again_after_the_server_is_killed(
    tmp_path: Path,
) -> None:
    settings = bench_settings(tmp_path / "data")
    ice.install(settings)  # the participants' aiortc, on loopback as the server's
    host_url, public_url = await schedule_conference(settings)
    gail_key, bert_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    async with aiohttp.ClientSession() as http:

        async def arrive(url: str, shade: int, **hello: str) -> MediaParticipant:
            participant = MediaParticipant(await http.ws_connect(url), shade)
            await participant.hello(**hello)
            return participant

        async with running_server(settings, tmp_path / "first.log") as server:
            host = await arrive(host_url, 60)
            gail = await arrive(public_url, 180, client_key=gail_key, display_name="Gail Guest")
            bert = await arrive(public_url, 120, client_key=bert_key, display_name="Bert")
            assert (await host.request("set_options", moderator=True, recording=False))[
                "type"
            ] == "result"
            assert (await host.request("start"))["type"] == "result"
            # Gail may use her microphone only; Bert is removed.
            assert (await host.request("set_permission", participant=gail.id, permission="audio"))[
                "type"
            ] == "result"
            assert (await host.request("remove", participant=bert.id))["type"] == "result"
            # And no new guest from now on.
            locked = await host.request("set_access", locked=True, waiting_room=False)
            assert locked["type"] == "result"
            before = {"host": host.id, "gail": gail.id}
            server.kill()
            await server.wait()
            for participant in (host, gail, bert):
                await participant.close()

        async with running_server(settings, tmp_path / "second.log"):
            # The pages reconnect, as the browser's do.
            host = await arrive(host_url, 60)
            gail = await arrive(public_url, 180, client_key=gail_key, display_name="Gail Guest")
            assert {"host": host.id, "gail": gail.id} == before
            welcome = gail.welcome
            assert welcome["started"] is True and welcome["options"]["moderator"] is True
            assert welcome["moderation"]["permissions"] == {gail.id: "audio"}

            # Bert stays out; Gail was in, so the lock is not for her; a new guest's is.
            async def first_word(key: str) -> object:
                page = MediaParticipant(await http.ws_connect(public_url), 120)
                await page.send("hello", client_key=key, display_name="Bert")
                answer = await page.ws.receive()
                await page.close()
                return answer.json()["type"] if answer.type == WSMsgType.TEXT else answer.data

            assert await first_word(bert_key) == close_code(Closing.REMOVED)
            assert await first_word(secrets.token_urlsafe(16)) == close_code(Closing.LOCKED)
            # Unlocked: someone new from the address Bert came from waits to be let in.
            unlocked = await host.request("set_access", locked=False, waiting_room=False)
            assert unlocked["type"] == "result"
            assert await first_word(secrets.token_urlsafe(16)) == "waiting_room"

            introduce([host, gail])
            for participant in (host, gail):
                await enter(participant)

            async def back_as_before() -> bool:
                return await host.receiving(0.5) == {(gail.id, "audio")} and (
                    await gail.receiving(0.5) == {(host.id, "audio"), (host.id, "video")}
                )

            await wait_until(back_as_before)
            for participant in (host, gail):
                await participant.close()


async def test_a_removal_refused_while_the_database_is_held_then_made_survives_a_kill(
    tmp_path: Path,
) -> None:
    settings = bench_settings(tmp_path / "data")
    ice.install(settings)
    host_url, public_url = await schedule_conference(settings)
    bert_key = secrets.token_urlsafe(16)
    async with aiohttp.ClientSession() as http:
        async with running_server(settings, tmp_path / "first.log") as server:
            host = MediaParticipant(await http.ws_connect(host_url), 60)
            await host.hello()
            bert = MediaParticipant(await http.ws_connect(public_url), 120)
            await bert.hello(client_key=bert_key, display_name="Bert")
            # Another process holds the database longer than the server waits for it:
            # the host is told to try again, and nothing has changed meanwhile.
            holder = await hold_database(settings.database_path, BUSY_TIMEOUT_MS / 1000 + 1)
            answer = await host.request("remove", participant=bert.id)
            assert answer["type"] == "error" and answer["code"] == "busy"
            assert bert.closed_with is None
            await holder.wait()
            # Again: done, and written before the host hears so, even if the server is
            # killed the moment after.
            assert (await host.request("remove", participant=bert.id))["type"] == "result"
            server.kill()
            await server.wait()

            async def bert_was_removed() -> bool:
                return bert.closed_with == close_code(Closing.REMOVED)

            await wait_until(bert_was_removed)
            for participant in (host, bert):
                await participant.close()

        async with running_server(settings, tmp_path / "second.log"):
            bert = MediaParticipant(await http.ws_connect(public_url), 120)
            await bert.send("hello", client_key=bert_key, display_name="Bert")
            assert (await bert.ws.receive()).data == close_code(Closing.REMOVED)
            await bert.close()
