"""Spoken command -> referring expression (method.md §6) on realistic voice commands."""

import pytest

from iterprime_ros.core.text import (
    CommandError,
    EmptyCommandError,
    NonEnglishCommandError,
    NormaliserSettings,
    normalise_command,
)

COMMANDS = [
    ("could you pick up the red cup on the left please", "the red cup on the left"),
    ("pick up the red cup", "the red cup"),
    ("Grab the blue mug.", "the blue mug"),
    ("hand me the scissors", "the scissors"),
    ("give me the apple on the right", "the apple on the right"),
    ("bring me the bottle next to the laptop", "the bottle next to the laptop"),
    ("show me the dog", "the dog"),
    ("find the man in the white shirt", "the man in the white shirt"),
    ("point to the chair closest to the door", "the chair closest to the door"),
    ("get the banana", "the banana"),
    ("fetch the remote control for me", "the remote control"),
    ("take the green book, thanks", "the green book"),
    ("look at the woman holding an umbrella", "the woman holding an umbrella"),
    ("where is the cat?", "the cat"),
    ("Where's my phone", "my phone"),
    ("Please pick up the toy car", "the toy car"),
    ("can you grab the cup on the table for me please", "the cup on the table"),
    ("would you please hand me the knife", "the knife"),
    ("hey robot, pick up the yellow sponge", "the yellow sponge"),
    ("robot please get the bowl on the left", "the bowl on the left"),
    ("I want the big orange", "the big orange"),
    ("I'd like the glass of water please", "the glass of water"),
    ("pick the red block up", "the red block"),
    ("pick the red block up please", "the red block"),
    ("go and get the white plate", "the white plate"),
    ("Could you please point at the person on the right?", "the person on the right"),
    ("pass me the salt", "the salt"),
    ("select the second car from the left", "the second car from the left"),
    ("Pick up the Coca-Cola can.", "the Coca-Cola can"),
    ("grab the man’s hat", "the man's hat"),
    ("please grab the cup on the right thank you", "the cup on the right"),
    ("can you find the leftmost bottle 🙂", "the leftmost bottle"),
    ("OK robot, now pick up the sponge!", "the sponge"),
    ("locate the umbrella", "the umbrella"),
    ("could you give the stapler to me", "the stapler"),
    ("get me the towel now", "the towel"),
    ("Can you show me the picture frame on the wall?", "the picture frame on the wall"),
    ("lift up the box", "the box"),
    ("pick up the cup that is on the left", "the cup that is on the left"),
    ("grab the 2.5 litre bottle", "the 2.5 litre bottle"),
    ("bring me the salt & pepper shakers", "the salt & pepper shakers"),
    ("grab the cup, would you?", "the cup"),
    ("robot, pick up the cup", "the cup"),
    ("grab the cup next to me", "the cup next to me"),
    ("give me the cup closest to me", "the cup closest to me"),
    # already a referring expression: unchanged
    ("robot on the left", "robot on the left"),
    ("the cup closest to me", "the cup closest to me"),
    ("the man on the left", "the man on the left"),
    ("red cup", "red cup"),
    ("Man in blue shirt", "Man in blue shirt"),
    ("zebra facing left", "zebra facing left"),
    ("the guy picking up the ball", "the guy picking up the ball"),
    ("hand on the left", "hand on the left"),
    ("two men on the left", "two men on the left"),
    ("the cup to the left of the plate", "the cup to the left of the plate"),
    ("the man's hat", "the man's hat"),
    ("left-most zebra", "left-most zebra"),
]


@pytest.mark.parametrize("command, expression", COMMANDS)
def test_a_voice_command_becomes_its_referring_expression(command, expression):
    assert normalise_command(command) == expression


@pytest.mark.parametrize(
    "command", ["", "   ", "\n\t", "🙂👍", "?!", "please", "pick up", "could you"]
)
def test_a_command_without_an_object_is_refused_as_empty(command):
    with pytest.raises(EmptyCommandError):
        normalise_command(command)


@pytest.mark.parametrize(
    "command",
    [
        "recoge la taza roja",
        "nimm die rote Tasse",
        "prends la tasse rouge à gauche",
        "拿起红色的杯子",
        "красная чашка слева",
        "123 456",
    ],
)
def test_non_english_commands(command):
    with pytest.raises(NonEnglishCommandError) as info:
        normalise_command(command)
    assert "English" in str(info.value)


def test_error_hierarchy_and_messages():
    assert issubclass(EmptyCommandError, CommandError) and issubclass(
        NonEnglishCommandError, CommandError
    )
    assert issubclass(CommandError, ValueError)
    with pytest.raises(EmptyCommandError, match="names no object"):
        normalise_command("pick up please")


def test_single_ascii_word_and_accents_pass():
    assert normalise_command("kiwi") == "kiwi"
    assert normalise_command("grab the café sign") == "the café sign"


def test_off_switch_only_cleans():
    off = NormaliserSettings(enabled=False)
    assert (
        normalise_command("Could you pick up the red cup, please?", off)
        == "Could you pick up the red cup please"
    )
    with pytest.raises(EmptyCommandError):
        normalise_command("  ", off)
    assert (
        normalise_command("recoge la taza", NormaliserSettings(check_language=False))
        == "recoge la taza"
    )


def test_configurable_phrase_lists():
    custom = NormaliserSettings(
        verbs=("segment",), leading_phrases=("computer",), trailing_phrases=("over",)
    )
    assert normalise_command("Computer segment the red cup over", custom) == "the red cup"
    assert normalise_command("pick up the red cup", custom) == "pick up the red cup"
