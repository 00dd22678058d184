"""Tests of the webhook: GitHub lines directly, then POSTs over real sockets that a chat
client sees the bot say."""

from __future__ import annotations

import json
import logging
from typing import Any

import h11
import pytest
import trio
import trio_chat_webhook
from trio_chat_webhook import Webhook, github_line

from trio_chat.routes import signature
from trio_chat.testing import TestServer, local_config, open_client, open_test_server

SECRET = "hook-secret"


async def post(
    chat: TestServer, body: bytes, *headers: tuple[str, str], target: str = "/hooks/webhook"
) -> tuple[int, Any]:
    """POST ``body`` to the web port; the status and the body (parsed if JSON)."""
    client = h11.Connection(h11.CLIENT)
    fields = [("Host", "chat"), ("Content-Length", str(len(body))), *headers]
    data = client.send(h11.Request(method="POST", target=target, headers=fields))
    data += client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage())
    stream = await trio.open_tcp_stream(*chat.address("ws"))
    async with stream:
        with trio.fail_after(5):
            await stream.send_all(data)
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    status, content_type = event.status_code, dict(event.headers)[b"content-type"]
                    answer = b""
                elif isinstance(event, h11.Data):
                    answer += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
    return status, json.loads(answer) if content_type == b"application/json" else answer


async def ready(webhook: Webhook) -> None:
    """Wait (bounded) until the webhook's bot is in its room."""
    with trio.fail_after(5):
        await webhook.ready.wait()


def config(**settings: Any) -> Any:
    return local_config(plugin_settings={"webhook": {"secret": SECRET, **settings}})


# ---------------------------------------------------------------------- GitHub, no server


def test_github_events_become_one_line_each() -> None:
    repo = {"repository": {"full_name": "trio/chat"}, "sender": {"login": "alice"}}
    push = {
        **repo,
        "ref": "refs/heads/main",
        "commits": [{}, {}],
        "head_commit": {"message": "Fix the thing\n\nLong story."},
    }
    assert github_line("push", push) == "[trio/chat] alice pushed 2 commits to main: Fix the thing"
    issue = {**repo, "action": "opened", "issue": {"number": 7, "title": "Broken", "html_url": "u"}}
    assert github_line("issues", issue) == "[trio/chat] alice opened issue #7: Broken u"
    pull = {**repo, "action": "closed", "pull_request": {"number": 8, "title": "Fix"}}
    assert github_line("pull_request", pull) == "[trio/chat] alice closed pull request #8: Fix"
    assert github_line("ping", {**repo, "zen": "Keep it simple."}) == (
        "[trio/chat] webhook set up: Keep it simple."
    )
    assert github_line("star", repo) == "[trio/chat] alice: star"
    assert github_line("push", {}) == "[?] someone pushed 0 commits to "


# -------------------------------------------------------------------- over real sockets


async def test_a_post_with_the_secret_is_said_by_the_bot() -> None:
    webhook = Webhook()
    async with open_test_server(webhook, config=config()) as chat:
        await ready(webhook)
        async with open_client(chat, "bob") as bob:
            status, answer = await post(chat, b"deploy finished\n", ("X-Trio-Chat-Secret", SECRET))
            assert (status, answer) == (200, {"room": "#lobby", "posted": 1})
            said = await bob.expect("message")
            assert (said.nick, said.room, said.text) == ("hooks", "#lobby", "deploy finished")
            await bob.command("/who")
            who = await bob.expect("info", lambda e: (e.data or {}).get("room") == "#lobby")
            members = {m["nick"]: m for m in who.data["members"]}
            assert members["hooks"].get("bot") is True


async def test_a_signed_github_event_posts_its_line() -> None:
    webhook = Webhook()
    async with open_test_server(webhook, config=config(nick="github")) as chat:
        await ready(webhook)
        async with open_client(chat, "bob") as bob:
            body = json.dumps(
                {"zen": "Design for failure.", "repository": {"full_name": "trio/chat"}}
            ).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", signature(SECRET, body)),
            ]
            assert (await post(chat, body, *headers))[0] == 200
            said = await bob.expect("message")
            assert (said.nick, said.text) == (
                "github",
                "[trio/chat] webhook set up: Design for failure.",
            )


async def test_without_the_secret_nothing_is_posted() -> None:
    webhook = Webhook()
    async with open_test_server(webhook, config=config()) as chat:
        await ready(webhook)
        async with open_client(chat, "bob") as bob:
            assert await post(chat, b"spam", ("X-Trio-Chat-Secret", "guess")) == (
                403,
                b"wrong or missing secret\n",
            )
            assert await post(chat, b"spam") == (403, b"wrong or missing secret\n")
            # The next message bob sees is his own: nothing was posted before it.
            await bob.say("mine")
            assert (await bob.expect("message")).text == "mine"


async def test_json_picks_an_allowed_room_and_others_are_refused() -> None:
    webhook = Webhook()
    async with open_test_server(webhook, config=config(rooms=["#dev"])) as chat:
        await ready(webhook)
        async with open_client(chat, "bob") as bob:
            await bob.command("/join #dev")
            await bob.expect("info", lambda e: (e.data or {}).get("room") == "#dev")
            proof = ("X-Trio-Chat-Secret", SECRET)
            json_type = ("Content-Type", "application/json")
            body = json.dumps({"text": "build green", "room": "#dev"}).encode()
            assert await post(chat, body, proof, json_type) == (200, {"room": "#dev", "posted": 1})
            joined = await bob.expect("join", lambda e: e.room == "#dev")
            assert joined.nick == "hooks"
            said = await bob.expect("message")
            assert (said.room, said.text) == ("#dev", "build green")
            refused = await post(chat, b"x", proof, target="/hooks/webhook?room=%23secret")
            assert refused == (403, b"posting to #secret is not allowed\n")
            bad = await post(chat, b'{"room": "#dev"}', proof, json_type)
            assert bad[0] == 400
            many = await post(chat, b"line\n" * 11, proof)
            assert many == (413, b"at most 10 lines per request\n")


async def test_without_a_secret_there_is_no_route(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(trio_chat_webhook.SECRET_VARIABLE, raising=False)
    with caplog.at_level(logging.WARNING, "trio_chat_webhook"):
        async with open_test_server(Webhook()) as chat:
            # The port's answer to a POST anywhere no route is (the page is GET only).
            assert await post(chat, b"x") == (405, b"method not allowed\n")
            assert chat.server.bot("hooks") is None
    assert any("no secret" in r.getMessage() for r in caplog.records)


async def test_the_module_is_a_plugin_using_the_environments_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(trio_chat_webhook.SECRET_VARIABLE, "from-env")
    monkeypatch.setattr(trio_chat_webhook, "default_webhook", Webhook())
    async with open_test_server(trio_chat_webhook) as chat:
        await ready(trio_chat_webhook.default_webhook)
        async with open_client(chat, "bob") as bob:
            assert (await post(chat, b"hi", ("X-Trio-Chat-Secret", "from-env")))[0] == 200
            assert (await bob.expect("message")).text == "hi"


async def test_a_flood_of_posts_is_refused_with_429_and_the_room_sees_no_more() -> None:
    webhook = Webhook()
    async with open_test_server(webhook, config=config()) as chat:
        await ready(webhook)
        async with open_client(chat, "bob") as bob:
            proof = ("X-Trio-Chat-Secret", SECRET)
            ten = "".join(f"line {n}\n" for n in range(10)).encode()
            # The bot may say 20 lines at once (then 5 a second): the third batch of ten
            # at once is refused whole, not cut in the middle.
            statuses = [(await post(chat, ten, proof))[0] for _ in range(3)]
            assert statuses == [200, 200, 429]
            said = [(await bob.expect("message")).text for _ in range(20)]
            assert said == [f"line {n}" for n in range(10)] * 2
            await bob.say("mine")
            assert (await bob.expect("message")).text == "mine"
