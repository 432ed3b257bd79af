"""The Textual chat example, driven headlessly with `App.run_test()` and its pilot: two
users sign in, type and press keys in one pane, and the other pane shows it live."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from examples.chat import ChatApp, ChatPane

FAST = {"scrypt_n": 2 ** 8, "scrypt_r": 1, "scrypt_p": 1}
SIZE = (150, 40)


def shown(pane: ChatPane, widget: str) -> str:
    return str(pane.query_one(widget, Static).content)


async def until(pilot: Pilot, check: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if check():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"never happened: {what}")


async def type_into(pilot: Pilot, pane: ChatPane, widget: str, text: str,
                    submit: bool = True) -> None:
    field = pane.query_one(widget, Input)
    field.focus()
    await pilot.pause()
    await pilot.press(*text)
    if submit:
        await pilot.press("enter")


async def sign_up(pilot: Pilot, pane: ChatPane, email: str) -> None:
    """Fill the form (typing is tested in the sign-in test) and click "Create account"."""
    pane.query_one("#email", Input).value = email
    pane.query_one("#password", Input).value = "correct horse"
    await pilot.click(f"#{pane.id} #sign-up")
    await until(pilot, lambda: pane.client is not None, f"{email} signed in")


def run(path: Path, scenario: Callable[[Pilot, ChatPane, ChatPane], Awaitable[Any]]) -> None:
    async def main() -> None:
        app = ChatApp(path, **FAST)
        async with app.run_test(size=SIZE) as pilot:
            left = app.query_one("#left", ChatPane)
            right = app.query_one("#right", ChatPane)
            await scenario(pilot, left, right)

    asyncio.run(main())


def test_two_users_see_each_other_live(tmp_path: Path) -> None:
    async def scenario(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await sign_up(pilot, left, "ada@example.com")
        await sign_up(pilot, right, "bob@example.com")
        assert "signed in as ada@example.com" in str(left.query_one("#whoami").content)
        await until(pilot, lambda: "say hello" in shown(right, "#messages"), "empty channel")
        await type_into(pilot, left, "#compose", "hello bob")
        await until(pilot, lambda: "ada@example.com: hello bob" in shown(right, "#messages"),
                    "bob sees ada's message")
        await type_into(pilot, right, "#compose", "hi ada")
        await until(pilot, lambda: shown(left, "#messages").splitlines()[-1]
                    == "bob@example.com: hi ada", "ada sees bob's reply last")
        assert "(sending" not in shown(left, "#messages")

    run(tmp_path / "chat.livedb", scenario)


def test_search_results_are_live(tmp_path: Path) -> None:
    async def scenario(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await sign_up(pilot, left, "ada@example.com")
        await sign_up(pilot, right, "bob@example.com")
        await type_into(pilot, left, "#compose", "lunch at noon?")
        await type_into(pilot, right, "#search", "lun", submit=False)
        await until(pilot, lambda: "1 found" in shown(right, "#results"), "one result")
        assert "ada@example.com: lunch at noon?" in shown(right, "#results")
        await type_into(pilot, left, "#compose", "lunchbox forgotten")
        await type_into(pilot, left, "#compose", "unrelated words")
        await until(pilot, lambda: "2 found" in shown(right, "#results"), "a new match")
        assert "lunchbox forgotten" in shown(right, "#results")
        assert "unrelated" not in shown(right, "#results")

    run(tmp_path / "chat.livedb", scenario)


def test_channels_are_live_and_separate(tmp_path: Path) -> None:
    async def scenario(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await sign_up(pilot, left, "ada@example.com")
        await sign_up(pilot, right, "bob@example.com")
        await type_into(pilot, left, "#compose", "/join Design")
        channels = right.query_one("#channels", OptionList)
        await until(pilot, lambda: channels.option_count == 3, "bob sees the new channel")
        assert [channels.get_option_at_index(i).id for i in range(3)] == [
            "design", "general", "random"]
        await type_into(pilot, left, "#compose", "mockups are up")
        channels.focus()
        channels.highlighted = 0
        await pilot.press("enter")
        await until(pilot, lambda: "mockups are up" in shown(right, "#messages"),
                    "bob opens #design")
        assert right.channel == "design"
        await type_into(pilot, right, "#compose", "/join general")
        await type_into(pilot, right, "#compose", "back in general")
        await until(pilot, lambda: "back in general" in shown(right, "#messages"), "general")
        assert "back in general" not in shown(left, "#messages")

    run(tmp_path / "chat.livedb", scenario)


def test_sending_is_optimistic(tmp_path: Path) -> None:
    async def scenario(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await sign_up(pilot, left, "ada@example.com")
        await sign_up(pilot, right, "bob@example.com")
        gate = threading.Event()
        assert left.client is not None
        left.client.mutation(lambda ctx: gate.wait(10))
        await type_into(pilot, left, "#compose", "fast as light")
        await until(pilot, lambda: "fast as light  (sending…)" in shown(left, "#messages"),
                    "ada sees her message before it commits")
        assert "fast as light" not in shown(right, "#messages")
        gate.set()
        await until(pilot, lambda: "ada@example.com: fast as light" in shown(right, "#messages"),
                    "bob sees it once committed")
        await until(pilot, lambda: "sending" not in shown(left, "#messages"), "committed")
        assert shown(left, "#messages").count("fast as light") == 1

    run(tmp_path / "chat.livedb", scenario)


def test_wrong_password_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chat.livedb"

    async def first(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await sign_up(pilot, left, "ada@example.com")
        await type_into(pilot, left, "#compose", "still here tomorrow")
        await until(pilot, lambda: "sending" not in shown(left, "#messages")
                    and "still here" in shown(left, "#messages"), "sent")

    async def second(pilot: Pilot, left: ChatPane, right: ChatPane) -> None:
        await type_into(pilot, right, "#email", "ada@example.com", submit=False)
        await type_into(pilot, right, "#password", "wrong password")
        await until(pilot, lambda: "invalid email or password"
                    in str(right.query_one("#signin-error").content), "refused")
        assert right.client is None
        right.query_one("#password", Input).value = ""
        await type_into(pilot, right, "#password", "correct horse")
        await until(pilot, lambda: "ada@example.com: still here tomorrow"
                    in shown(right, "#messages"), "the message survived the restart")

    run(path, first)
    run(path, second)
