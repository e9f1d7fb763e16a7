"""Discord's schema rules for application commands, as documented in discord-api-docs
(interactions/application-commands): naming, lengths, option and choice limits, the 8,000-character
size of one command, and how many commands of each type one scope may hold."""

from __future__ import annotations

import unicodedata
from typing import Any

from .limits import ApiError, FormErrors

Payload = dict[str, Any]
Path = tuple[Any, ...]

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
#: "100 global CHAT_INPUT commands, 15 global USER commands, 15 global MESSAGE commands"; the same per guild.
MAX_COMMANDS = {CHAT_INPUT: 100, USER: 15, MESSAGE: 15}
#: A bulk overwrite longer than every type's limit together is refused as a list ("Must be 130 or fewer").
MAX_OVERWRITE = sum(MAX_COMMANDS.values())
#: "a maximum of 8000 characters for combined name, description, and value properties for each command, its
#: options (including subcommands and groups), and choices. When localization fields are present, only the
#: longest localization for each field (including the default value) is counted towards the size limit."
MAX_COMMAND_SIZE = 8000
MAX_STRING_LENGTH = 6000  # min_length 0..6000, max_length 1..6000
MAX_CHOICE_TEXT = 100  # choice names 1-100 characters; string values up to 100

# Devanagari (incl. Extended, Extended-A) and Thai script ranges, minus the danda and baht sign (script Common).
_DEVA_THAI = ((0x0900, 0x0963), (0x0966, 0x097F), (0xA8E0, 0xA8FF), (0x11B00, 0x11B5F), (0x0E01, 0x0E3A), (0x0E40, 0x0E5B))


def _allowed_char(ch: str, *, punctuation: bool) -> bool:
    """``[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]``; context-menu names also take ``\\p{P}``."""
    if ch in "-_'" or unicodedata.category(ch)[0] in ("LNP" if punctuation else "LN"):
        return True
    return any(low <= ord(ch) <= high for low, high in _DEVA_THAI)


def chat_input_name_error(name: Any) -> str | None:
    """``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``, using the lowercase variant of any letter that has one."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or not all(_allowed_char(c, punctuation=False) for c in name):
        return "Command name is invalid"
    if any(c != c.lower() for c in name):
        return "Command name must be lowercase"
    return None


def context_menu_name_error(name: Any) -> str | None:
    """USER and MESSAGE commands "may be mixed case and can include spaces": 1-32 characters of letters,
    numbers, punctuation, Devanagari/Thai and spaces, not blank."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or not name.strip():
        return "Command name is invalid"
    if not all(c == " " or _allowed_char(c, punctuation=True) for c in name):
        return "Command name is invalid"
    return None


def _check_name(errors: FormErrors, path: Path, obj: Payload, *, chat_input: bool) -> None:
    check = chat_input_name_error if chat_input else context_menu_name_error
    problem = check(obj.get("name"))
    if problem:
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", problem)
    for locale, value in (obj.get("name_localizations") or {}).items():
        if value is not None and (problem := check(value)):
            errors.add((*path, "name_localizations", locale), "APPLICATION_COMMAND_INVALID_NAME", problem)


def _check_text(errors: FormErrors, path: Path, obj: Payload, key: str, limit: int) -> None:
    """``key`` (and its localizations) must be 1..``limit`` characters."""
    values = [((*path, key), obj.get(key))]
    values += [
        ((*path, f"{key}_localizations", loc), v) for loc, v in (obj.get(f"{key}_localizations") or {}).items() if v is not None
    ]
    for where, value in values:
        if not isinstance(value, str) or not 1 <= len(value) <= limit:
            errors.add(where, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {limit} in length.")


def _check_bound(errors: FormErrors, path: Path, value: Any, low: int, high: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
    elif value < low:
        errors.add(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
    elif value > high:
        errors.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")


def _check_choices(errors: FormErrors, path: Path, opt: Payload) -> None:
    choices = opt.get("choices") or []
    if len(choices) > 25:
        errors.max_length((*path, "choices"), 25)
    if choices and opt.get("autocomplete"):
        errors.add(
            (*path, "autocomplete"), "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", "Autocomplete cannot be used with choices"
        )
    for k, choice in enumerate(choices):
        where = (*path, "choices", k)
        if not isinstance(choice, dict):
            errors.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        _check_text(errors, where, choice, "name", MAX_CHOICE_TEXT)
        value = choice.get("value")
        if isinstance(value, str) and len(value) > MAX_CHOICE_TEXT:
            errors.max_length((*where, "value"), MAX_CHOICE_TEXT)


def _check_options(errors: FormErrors, path: Path, options: Any, depth: int) -> None:
    if not isinstance(options, list):
        return
    if len(options) > 25:
        errors.max_length((*path, "options"), 25)
    seen: set[Any] = set()
    optional_seen = False
    for i, opt in enumerate(options):
        p = (*path, "options", i)
        if not isinstance(opt, dict):
            errors.add(p, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        kind = opt.get("type")
        _check_name(errors, p, opt, chat_input=True)
        _check_text(errors, p, opt, "description", 100)
        if opt.get("name") in seen:
            errors.add((*p, "name"), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
        seen.add(opt.get("name"))
        if kind not in range(1, 12):
            errors.add((*p, "type"), "BASE_TYPE_CHOICES", f"Value must be one of {list(range(1, 12))}.")
        if kind in (1, 2):
            if depth >= (1 if kind == 2 else 2):
                errors.add((*p, "type"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands cannot be nested this deep")
            children = opt.get("options") or []
            if kind == 2 and any(c.get("type") != 1 for c in children if isinstance(c, dict)):
                errors.add(
                    (*p, "options"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommand groups may only contain subcommands"
                )
            _check_options(errors, p, children, depth + 1)
            continue
        if opt.get("required"):
            if optional_seen:
                errors.add(
                    (*p, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        _check_bound(errors, (*p, "min_length"), opt.get("min_length"), 0, MAX_STRING_LENGTH)
        _check_bound(errors, (*p, "max_length"), opt.get("max_length"), 1, MAX_STRING_LENGTH)
        _check_choices(errors, p, opt)
    kinds = {o.get("type") for o in options if isinstance(o, dict)}
    if kinds & {1, 2} and kinds - {1, 2}:
        errors.add(
            (*path, "options"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands cannot be mixed with other options"
        )


def _longest(obj: Payload, key: str) -> int:
    """Length of ``key`` counted Discord's way: the longest of the default and its localizations."""
    values = [obj.get(key), *(obj.get(f"{key}_localizations") or {}).values()]
    return max((len(str(v)) for v in values if v is not None), default=0)


def command_size(cmd: Payload) -> int:
    """Characters of name, description and value properties of a command, its options and choices."""

    def options_size(options: Any) -> int:
        total = 0
        for opt in options if isinstance(options, list) else []:
            if isinstance(opt, dict):
                total += _longest(opt, "name") + _longest(opt, "description") + options_size(opt.get("options"))
                for choice in opt.get("choices") or []:
                    if isinstance(choice, dict):
                        total += _longest(choice, "name") + _longest(choice, "value")
        return total

    return _longest(cmd, "name") + _longest(cmd, "description") + options_size(cmd.get("options"))


def validate_command(errors: FormErrors, path: Path, cmd: Any) -> None:
    if not isinstance(cmd, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    kind = cmd.get("type", CHAT_INPUT)
    if kind not in MAX_COMMANDS:
        errors.add((*path, "type"), "BASE_TYPE_CHOICES", f"Value must be one of {sorted(MAX_COMMANDS)}.")
        return
    _check_name(errors, path, cmd, chat_input=kind == CHAT_INPUT)
    if kind == CHAT_INPUT:
        _check_text(errors, path, cmd, "description", 100)
        _check_options(errors, path, cmd.get("options") or [], 0)
    elif cmd.get("description"):
        errors.add(
            (*path, "description"), "APPLICATION_COMMAND_INVALID_DESCRIPTION", "Context menu commands cannot have a description"
        )
    if command_size(cmd) > MAX_COMMAND_SIZE:
        errors.add(path, "APPLICATION_COMMAND_TOO_LARGE", f"Command exceeds maximum size ({MAX_COMMAND_SIZE})")


def check_counts(commands: list[Any]) -> None:
    """Per scope: at most 100 CHAT_INPUT, 15 USER and 15 MESSAGE commands, counted apart (30032)."""
    for kind, limit in MAX_COMMANDS.items():
        count = sum(1 for c in commands if isinstance(c, dict) and c.get("type", CHAT_INPUT) == kind)
        if count > limit:
            raise ApiError(
                400,
                30032,
                f"Maximum number of application commands reached ({limit})",
                detail=f"{count} commands of type {kind}; Discord allows {limit} per scope",
            )
