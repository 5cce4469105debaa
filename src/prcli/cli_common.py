"""Pieces shared by the subcommands: option help texts, choices, and building a stage config."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import click
import typer
from click.core import ParameterSource
from pydantic import BaseModel

from prcli.config import endpoint_fields, resolve_config, unused_settings

C = TypeVar("C", bound=BaseModel)

CONFIG_HELP = "YAML file of option: value pairs; options given on the command line win."
JSON_HELP = "Print the result as one JSON object on stdout."


def choice(*values: str) -> click.Choice:
    return click.Choice(values, case_sensitive=False)


def explicit_params(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user actually gave on the command line (or via environment)."""
    given = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT):
            given.add(name)
    return given


def build_config(
    ctx: typer.Context,
    cls: type[C],
    config_file: Path | None,
    *,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    rename: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    arguments: tuple[str, ...] = (),
) -> C:
    """The stage config from the command's parameters (defaults < YAML < explicit flags); a required
    field left unset on the command line may come from the YAML file."""
    rename = rename or {}
    values = {rename.get(k, k): v for k, v in ctx.params.items() if k not in exclude}
    fields = cls.model_fields
    values = {
        k: v for k, v in values.items() if v is not None or k not in fields or not fields[k].is_required()
    }
    explicit = {rename.get(k, k) for k in explicit_params(ctx) if k not in exclude}
    if extra:
        values.update(extra)
    return resolve_config(cls, values, explicit, config_file, arguments)


# ----------------------------------------------------------------------------- options from a config model


_FIELD_DEFAULT: Any = object()


def _option_for(
    name: str, info: Any, *, positional: bool, short: str | None, default: Any = _FIELD_DEFAULT
) -> tuple[Any, Any]:
    """(annotation, default) of one typer parameter for config field `name`."""
    import inspect

    annotation = _typer_type(info.annotation)
    help_text = info.description or ""
    required = info.is_required() and default is _FIELD_DEFAULT
    if required:  # may come from --config instead: checked when the config is built
        annotation, default, required = typing.Optional[annotation], None, False  # noqa: UP045
        help_text += " Required: here or in the --config file."
    if default is _FIELD_DEFAULT:
        default = ... if required else info.get_default(call_default_factory=True)
    if positional:
        param = typer.Argument(help=help_text, show_default=not required)
    else:
        flag = "--" + name.replace("_", "-")
        decls = [flag] if short is None else [flag, *short.split(",")]
        if annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}:
            decls = [f"{flag}/--no-{flag[2:]}"]  # an on/off switch; None (unset) means "automatic"
        param = typer.Option(*decls, help=help_text, show_default=not required)
    from typing import Annotated

    return Annotated[annotation, param], (inspect.Parameter.empty if required else default)


def _typer_type(annotation: Any) -> Any:
    """What typer can parse; the config's own validation makes the value what it is. typer takes no
    unions (one with `str`, a path or a hub name, is read as text) and no validators inside a list or
    an optional (`list[ServerUrl]` is read as `list[str]`)."""
    annotation = _plain(annotation)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) > 1 and str in args:
        return str if len(args) == len(typing.get_args(annotation)) else typing.Optional[str]  # noqa: UP045
    return annotation


def _plain(annotation: Any) -> Any:
    """`annotation` without `Annotated[...]` metadata at any depth."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _plain(args[0])
    if origin is list:
        return list[_plain(args[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_plain(a) for a in args)]  # noqa: UP007
    return annotation


def config_command(
    cls: type[BaseModel],
    *,
    positional: tuple[str, ...] = (),
    short: dict[str, str] | None = None,
    hidden: tuple[str, ...] = (),
) -> Any:
    """Decorate `fn(config, json_out)` into a typer command whose options are `cls`'s fields.

    `short` gives extra option names (comma-separated: `{"prompt": "--judge-prompt"}`, `{"model": "-m"}`);
    an LLM connection field (`judge_endpoint`) becomes one option per connection setting
    (`--judge-base-url`, `--judge-model`, ...).

    Option names, types, defaults and help come from the config model, so the command line, the
    YAML file and the Python API can never drift apart. Adds `--config FILE` and `--json`.
    """
    import functools
    import inspect
    from typing import Annotated, Optional

    short = short or {}

    def decorate(fn: Any) -> Any:
        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        fields = cls.model_fields
        rest = [n for n in fields if n not in positional and n not in hidden]
        order = list(positional) + [n for n in rest if fields[n].is_required()]
        order += [n for n in rest if not fields[n].is_required()]
        endpoints = endpoint_fields(cls)
        for name in order:
            if name in endpoints:  # an LLM connection: one option per Endpoint field, under the role's prefix
                role = fields[name].get_default(call_default_factory=True)
                for sub, info in type(role).model_fields.items():
                    if sub in unused_settings(cls, name):
                        continue
                    flat = endpoints[name] + sub
                    annotation, default = _option_for(
                        flat, info, positional=False, short=short.get(flat), default=getattr(role, sub)
                    )
                    params.append(
                        inspect.Parameter(
                            flat, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
                        )
                    )
                continue
            annotation, default = _option_for(
                name, fields[name], positional=name in positional, short=short.get(name)
            )
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
                )
            )
        params.append(
            inspect.Parameter(
                "config",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[Optional[Path], typer.Option(help=CONFIG_HELP)],  # noqa: UP045
                default=None,
            )
        )
        params.append(
            inspect.Parameter(
                "json_out",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[bool, typer.Option("--json", help=JSON_HELP)],
                default=False,
            )
        )

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> Any:
            from prcli.ui import stdout_for_results_only

            cfg = build_config(
                ctx, cls, kwargs.get("config"), exclude={"config", "json_out"}, arguments=positional
            )
            with stdout_for_results_only():
                return fn(cfg, json_out=kwargs.get("json_out", False))

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        del wrapper.__wrapped__
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
