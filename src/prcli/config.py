"""Stage configuration: defaults < YAML file (`--config`) < flags given on the command line.

Every stage has a pydantic config model; the resolved config is saved next to the stage's outputs
so a run can be repeated and audited. Secrets never enter a config: only the *name* of the
environment variable that holds a key does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from prcli.jsonl import InputError, LineProblem, write_text_atomic

C = TypeVar("C", bound=BaseModel)

SKIP_INVALID_HELP = "Skip bad input lines (written to *.rejected.jsonl) instead of stopping."
OVERWRITE_HELP = "Start again instead of resuming an existing output."


_KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "aiza", "ghp_", "github_pat_", "pk-", "key-", "bearer ")


def _env_var_name(value: str) -> str:
    """Refuse a value that is not a variable name, or looks like a key typed in its place: it would be
    saved in config.yaml. The value is never repeated in the message."""
    looks_like_key = value.lower().startswith(_KEY_PREFIXES) or (
        len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value)
    )
    if looks_like_key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            "takes the NAME of an environment variable that holds the key (for example OPENAI_API_KEY), "
            "not the key itself; the value given "
            + ("looks like a key" if looks_like_key else "is not a variable name")
            + " and was not saved"
        )
    return value


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]

_SECRET_PARAMS = re.compile(r"(key|token|secret|password|passwd|auth|sig|signature|credential)", re.I)


def _server_url(value: str) -> str:
    """Refuse a URL that carries a credential (`user:pass@`, `?key=...`): it would be saved in config.yaml
    and sent to trackers. The value is never repeated in the message."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(value)
    if parts.username or parts.password or any(_SECRET_PARAMS.search(k) for k, _ in parse_qsl(parts.query)):
        raise ValueError(
            "this URL carries a credential (user:password@ or a key in its query), which would be saved in "
            "the run's config: give the URL without it and the key through the environment variable named "
            "by the api-key-env option"
        )
    return value


ServerUrl = Annotated[str, AfterValidator(_server_url)]


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are errors (a typo must not pass silently).

    An LLM connection (`prcli.llm.Endpoint`) is one nested field, `endpoint` or `<role>_endpoint`,
    and is also given flat, as its fields under the role's prefix (`judge_base_url`, `base_url`):
    that is how the command line and YAML files give it. The field's default carries the role's
    own defaults, which flat values then override one by one.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _nest_endpoints(cls, data: Any) -> Any:
        fields = endpoint_fields(cls)
        if not fields or not isinstance(data, dict):
            return data
        from prcli.llm import Endpoint

        data = dict(data)
        for name, prefix in fields.items():
            flat = {sub: data.pop(prefix + sub) for sub in Endpoint.model_fields if prefix + sub in data}
            given = data.get(name)
            given = given.model_dump(exclude_unset=True) if isinstance(given, Endpoint) else dict(given or {})
            role = cls.model_fields[name].get_default(call_default_factory=True)
            for sub in unused_settings(cls, name):  # refused, not silently ignored
                value = flat.get(sub, given.get(sub, getattr(role, sub)))
                if value != getattr(role, sub):
                    option = "--" + (prefix + sub).replace("_", "-")
                    raise ValueError(
                        f"{option}: {prefix.rstrip('_') or 'this role'} does not use this setting"
                    )
            if flat:
                data[name] = {**role.model_dump(exclude_unset=True), **given, **flat}
        return data


def endpoint_fields(cls: type[BaseModel]) -> dict[str, str]:
    """{field: prefix} of a config's LLM connections: `endpoint` -> "", `judge_endpoint` -> "judge_"."""
    from prcli.llm import Endpoint

    return {
        name: "" if name == "endpoint" else name.removesuffix("endpoint")
        for name, info in cls.model_fields.items()
        if info.annotation is Endpoint
    }


def unused_settings(cls: type[BaseModel], field: str) -> tuple[str, ...]:
    """The Endpoint settings a role does not use (`json_schema_extra={"unused": (...)}` on its field):
    no option is generated for them, and a value given anyway is an error."""
    extra = cls.model_fields[field].json_schema_extra
    return tuple(extra.get("unused", ())) if isinstance(extra, dict) else ()


def flat_values(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` with nested LLM connections (`judge_endpoint: {base_url: ...}`) given flat instead."""
    fields = endpoint_fields(cls)
    out = {}
    for key, value in data.items():
        if key in fields and isinstance(value, dict):
            out.update({fields[key] + sub: v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of option names (dashes or underscores) to values."""
    path = Path(path)
    if not path.is_file():
        raise InputError([LineProblem(path, 0, "config file not found")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise InputError([LineProblem(path, line, f"invalid YAML: {getattr(exc, 'problem', exc)}")]) from None
    except UnicodeDecodeError:
        raise InputError([LineProblem(path, 0, "not valid UTF-8")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError([LineProblem(path, 1, "expected a mapping of option: value")])
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def known_names(cls: type[BaseModel]) -> set[str]:
    """Every name a config accepts: its fields, its LLM connections' flat settings, and YAML aliases."""
    from prcli.llm import Endpoint

    names = set(cls.model_fields)
    for prefix in endpoint_fields(cls).values():
        names |= {prefix + sub for sub in Endpoint.model_fields}
    return names | set(getattr(cls, "yaml_aliases", dict)())


def _problem(
    where: Path, err: dict[str, Any], cls: type[BaseModel], arguments: tuple[str, ...]
) -> LineProblem:
    field = ".".join(str(p) for p in err["loc"]) or None
    message = err["msg"]
    if err["type"] == "missing" and len(err["loc"]) == 1:
        name = str(err["loc"][0])
        flag = name.upper() if name in arguments else "--" + name.replace("_", "-")
        message = f"required: give {flag} on the command line or {name}: in the --config file"
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
        import difflib

        near = difflib.get_close_matches(str(err["loc"][0]), sorted(known_names(cls)), n=3, cutoff=0.6)
        message = "not an option of this command" + (f"; did you mean {', '.join(near)}?" if near else "")
    return LineProblem(where, 0, message, field)


def resolve_config(
    cls: type[C],
    cli_values: dict[str, Any],
    explicit: set[str],
    config_file: str | Path | None = None,
    arguments: tuple[str, ...] = (),
) -> C:
    """Merge CLI values (their defaults included), a YAML file, and the flags given explicitly.
    `arguments`: the fields the command takes as positional arguments (for the messages).

    A config class may take other tools' names in its YAML file (`pr train` takes TRL's): its
    `from_yaml_names(values)` turns them into its own before the merge."""
    values = dict(cli_values)
    where = Path(config_file) if config_file else Path("<command line>")
    if config_file is not None:  # a saved config.yaml works as --config: its run facts are records
        given = {
            k: v for k, v in flat_values(cls, load_config_file(config_file)).items() if k not in RUN_FACTS
        }
        translate = getattr(cls, "from_yaml_names", None)
        if translate is not None:
            try:
                given = translate(given)
            except ValueError as exc:
                raise InputError([LineProblem(where, 0, str(exc))]) from None
        for k, v in given.items():
            if k not in explicit:
                values[k] = v
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise InputError([_problem(where, e, cls, arguments) for e in exc.errors()]) from None


def plain_values(value: Any) -> Any:
    """Paths become absolute strings (a saved config must not depend on the working folder)."""
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, BaseModel):
        return plain_values(value.model_dump(mode="python"))
    return value


# what a run records beside its options in config.yaml: read back with --config, these are skipped
RUN_FACTS = frozenset(
    {
        "prcli_version",
        "world_size",
        "prompt_text_hash",
        "judge_prompt_sha256",
        "judge_rules",
        "loss_on",
        "policy_dtype",
        "final_dtype",
        "teacher_prompt_version",
        "extract_prompt_version",
    }
)


def save_config(config: BaseModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved config (plus `extra` run facts such as versions, names in RUN_FACTS) as YAML,
    atomically."""
    data = plain_values(config.model_dump(mode="python"))
    if extra:
        unknown = set(extra) - RUN_FACTS
        if unknown:
            raise ValueError(
                f"run facts {sorted(unknown)} are not in RUN_FACTS: --config could not read them back"
            )
        data = {**data, **extra}
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return Path(path)
