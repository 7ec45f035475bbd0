"""The CLI side of the deployment spec: click options made from its fields, and the request body made from them.

`tursi up` takes every field, `tursi build` the conversion ones (``tursi.core.spec`` says which is which). A
default --help can show as a value is the option's default; one it describes (physical cores, a free port) is
decided by tursid, so the option is sent only when given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field
from typing import Any, TypeVar

import click

from tursi.core.spec import option_of, spec_fields

F = TypeVar("F", bound=Callable[..., Any])


def spec_options(*groups: str) -> Callable[[F], F]:
    """A decorator adding the spec's fields of ``groups`` (default: all) to a click command, in declaration order:
    an argument for a positional field (the model), an --option for each other."""

    def decorate(command: F) -> F:
        for f in reversed(spec_fields(*groups)):  # click lists options in the order the decorators run, last first
            command = click_parameter(f)(command)
        return command

    return decorate


def click_parameter(f: Field[Any]) -> Callable[[F], F]:
    """The click argument or option for one spec field: its flag, type (range, choices, file), help and default."""
    opt = option_of(f)
    if opt.argument:
        return click.argument(f.name)
    kw: dict[str, Any] = {"help": opt.help, "metavar": opt.metavar}
    if opt.kind == "bool":
        return click.option(opt.flag(f.name), is_flag=True, **kw)
    kw["type"] = click_type(f)
    kw["multiple"] = opt.kind == "pairs"  # one KEY=VALUE a flag: --label a=1 --label b=2
    if opt.default_text is not None or f.default is None:  # described, or decided later: not sent unless given
        return click.option(opt.flag(f.name), f.name, default=None, show_default=opt.default_text or False, **kw)
    default = str(f.default) if opt.kind == "choice" else f.default  # click.Choice holds strings
    return click.option(opt.flag(f.name), f.name, default=default, show_default=True, **kw)


def click_type(f: Field[Any]) -> click.ParamType | None:
    opt = option_of(f)
    if opt.kind == "int":
        return click.IntRange(_whole(opt.minimum), _whole(opt.maximum))
    if opt.kind == "float":
        return click.FloatRange(opt.minimum, opt.maximum)
    if opt.kind == "choice":
        return click.Choice([str(c) for c in opt.choices])
    if opt.kind == "file":
        return click.Path(exists=True, dir_okay=False, resolve_path=True)
    if opt.kind == "pairs":
        return KeyValue()
    return None


class KeyValue(click.ParamType):
    """KEY=VALUE as a (KEY, VALUE) pair, split at the first '='; which keys and values are allowed, the spec says
    (tursid checks them: one rule for every client)."""

    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key, text


def _whole(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def request_body(params: Mapping[str, Any], *groups: str) -> dict[str, Any]:
    """The JSON body for the spec's fields of ``groups`` from a command's parsed parameters: a choice back to its
    declared type (``--bits 4`` -> 4), pairs to an object; what was not given (None, no pair) is left out."""
    body: dict[str, Any] = {}
    for f in spec_fields(*groups):
        value, opt = params.get(f.name), option_of(f)
        if value is None or (opt.kind == "pairs" and not value):
            continue
        if opt.kind == "choice":
            value = next(c for c in opt.choices if str(c) == value)
        elif opt.kind == "pairs":
            value = dict(value)  # a KEY given twice: the last one wins
        body[f.name] = value
    return body
