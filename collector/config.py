"""The configuration file: pydantic models, the single source of truth for the YAML.

The core models live here; each adapter's registration (`adapters/base.py`) hands the model of
its own `sources` entries to `accept_source_model()`, and `config_model()` joins them into one
discriminated union on `protocol`, so this module never imports the adapters. `load_config()`
reads a file and raises `ConfigError` with one line per problem, each naming its path
(`machines[0].sources[1].tags[3].type`) and its line in the file.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from collector.derive.rules import production_problems
from collector.derive.shifts import calendar_problems
from collector.profiles import apply_profiles
from collector.sources.backoff import Backoff
from collector.sources.problems import Problems, raise_problems
from collector.yamlfile import (
    ConfigError,
    Problem,
    duplicate_keys,
    format_path,
    yaml_problem,
)
from collector.yamlfile import line_of as _line_of

DEFAULT_CONFIG = "config/collector.yaml"
CONFIG_ENV = "COLLECTOR_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip


def parse_duration(value: Any) -> Any:
    """`250ms`, `1s`, `5m`, `1h`, `1d` or a number of seconds, as float seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 1s, 5m, 1h)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative; a duration must be 0 or more")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 1s, 5m, 1h, 7d)")


def parse_size(value: Any) -> Any:
    """`500MB`, `2GiB`, or a number of bytes, as int bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = (match.group(2) or "b").lower()
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"{value!r} is not a size (use e.g. 500MB, 2GB, 1GiB)")


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]
TagName = Annotated[str, Field(pattern=r"^[a-z0-9_]+$", min_length=1, max_length=64)]


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt option must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_LEDGER_DRIVERS = {"sqlite": {"pysqlite", "aiosqlite"},
                   "postgresql": {"asyncpg", "psycopg", "psycopg2", "pg8000"}}
_LEDGER_EXAMPLES = "sqlite:///data/ledger.db or postgresql://user:password@host:5432/db"


def check_ledger_url(value: Any) -> Any:
    """A database URL the ledger can open; the message never repeats the URL (it may hold a
    password)."""
    if not isinstance(value, str) or not value:  # empty: an unset ${VAR}, reported as such
        return value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL; write {_LEDGER_EXAMPLES}") from None
    except ValueError:  # the port is the only part SQLAlchemy converts
        port = re.search(r"@[^/?#]*?:([^/?#]*)", value)
        given = f" {port.group(1)!r}" if port else ""
        raise ValueError(f"the port{given} is not a number; write host:port with a number, "
                         f"e.g. postgresql://user:password@db.plant:5432/ledger") from None
    backend = "postgresql" if url.get_backend_name() == "postgres" else url.get_backend_name()
    if backend not in _LEDGER_DRIVERS:
        raise ValueError(f"database {url.get_backend_name()!r} is not supported; write "
                         f"{_LEDGER_EXAMPLES}")
    driver = url.drivername.partition("+")[2]
    if driver and driver not in _LEDGER_DRIVERS[backend]:
        raise ValueError(f"{url.drivername!r} names a driver the collector does not know "
                         f"({driver!r}); write {backend}:// and the collector picks its own")
    if url.port is not None and not 0 < url.port <= 65535:
        raise ValueError(f"port {url.port} is out of range; use 1 to 65535 (PostgreSQL: 5432)")
    if backend == "sqlite" and (not url.database or url.database == ":memory:"
                                or url.database.startswith("file:")):
        raise ValueError("a SQLite ledger is a file on disk; write sqlite:///data/ledger.db "
                         "(relative) or sqlite:////var/lib/collector/ledger.db (absolute)")
    return value


class LedgerConfig(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: Annotated[str, BeforeValidator(check_ledger_url)] = "sqlite:///data/ledger.db"
    # PostgreSQL schema holding the ledger tables (default: the database's search_path)
    db_schema: str | None = Field(None, alias="schema", pattern=r"^[a-z_][a-z0-9_]*$")
    retention: Duration | None = None  # raw readings older than this are deleted
    retention_interval: Duration = 600.0  # how often the retention sweep runs


class SpoolConfig(Strict):
    path: str | None = None  # default: collector-spool.db next to the config file
    max_size: ByteSize = 1024**3
    drop: Literal["oldest", "newest"] = "oldest"  # what goes when the spool is full


class PipelineConfig(Strict):
    queue_size: int = Field(100_000, ge=100)  # readings held in memory before spilling to the spool
    # most readings per transaction: live data goes by time (flush_interval), up to this
    batch_size: int = Field(50_000, ge=1)
    flush_interval: Duration = 2.0  # live readings committed together (README: what it trades)
    # a reading stamped further ahead of this box's clock is stored as uncertain and counted
    future_margin: Duration = 60.0


class ApiConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: list[str] = []
    write_keys: list[str] = []  # keys that may also change data (downtime reasons)
    cors_origins: list[str] = []
    # processes that build large answers (pages, aggregates) on the other cores; None: one
    # per CPU, at most four; 0: all in the collector process
    workers: int | None = Field(None, ge=0, le=64)


class TagConfig(Strict):
    """What every protocol's tag has; adapters extend it with their addressing fields."""

    name: TagName
    unit: str | None = None
    description: str | None = None
    # the normalisation of every raw value (collector/sources/normalise.py), in this order:
    nan_value: int | float | None = None  # a raw value meaning "no value": stored BAD, no value
    scale: float = 1.0
    offset: float = 0.0
    clamp_min: float | None = None  # after scale and offset: a lower value is stored as this
    clamp_max: float | None = None  # ... and a higher one as this
    deadband: float | None = Field(None, ge=0)  # absolute; store only changes larger than this
    heartbeat: Duration | None = None  # store at least this often even without change
    # no good reading for this long: the tag is stale (default: the source's; 0: never)
    stale_after: Duration | None = None

    @property
    def normalising(self) -> list[str]:
        """The options set that change a raw number (they do not apply to bools or text)."""
        return [name for name, unset in NORMALISING.items() if getattr(self, name) != unset]

    @model_validator(mode="after")
    def _clamp_in_order(self) -> TagConfig:
        if self.clamp_min is not None and self.clamp_max is not None \
                and self.clamp_min > self.clamp_max:
            raise_problems([("clamp_max", f"must not be less than clamp_min ({self.clamp_min:g})",
                             self.clamp_max)])
        return self


# the normalising options of a tag and the value that leaves numbers unchanged
NORMALISING: dict[str, float | None] = {
    "nan_value": None, "scale": 1.0, "offset": 0.0, "clamp_min": None, "clamp_max": None,
}

# source options renamed so that every protocol spells them alike: old name -> new name
RENAMED_SOURCE_KEYS = {
    "max_backoff": "reconnect_delay_max",  # opcua
    "reconnect_max_delay": "reconnect_delay_max",  # mqtt
}


class SourceConfig(Strict):
    """What every protocol's source has; adapters subclass it with `protocol: Literal[...]`."""

    id: Identifier
    protocol: str
    enabled: bool = True
    interval: Duration = 1.0
    timeout: Duration = 1.0
    # after a failed or lost connection wait reconnect_delay, doubling after each further
    # failure up to reconnect_delay_max; a successful connection starts over
    reconnect_delay: Duration = 1.0
    reconnect_delay_max: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 30.0
    # a tag with no good reading for this long is stale (machine amber, health degraded);
    # default: 3 intervals (at least 2 s) when the source polls, never for pushed data; 0: never
    stale_after: Duration | None = None
    profile: str | None = None  # a device profile's tags (collector/profiles.py), merged in
    tags: list[TagConfig] = []

    # old option names this entry was written with (for `collector check`'s deprecation lines)
    _renamed_keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _accept_renamed_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Old option names are read as their new ones and remembered for a deprecation line."""
        renamed: list[str] = []
        if isinstance(data, dict) and not RENAMED_SOURCE_KEYS.keys().isdisjoint(data):
            data = dict(data)
            problems: Problems = []
            for old, new in RENAMED_SOURCE_KEYS.items():
                if old in data:
                    value = data.pop(old)
                    if new in data:
                        problems.append((old, f"{old} is the old name of {new}, which is also "
                                         f"set; keep only {new}", value))
                    else:
                        data[new] = value
                        renamed.append(old)
            raise_problems(problems)
        source = handler(data)
        if renamed:
            source._renamed_keys = tuple(renamed)
        return source

    @model_validator(mode="after")
    def _reconnect_delays(self) -> SourceConfig:
        given = self.model_fields_set
        if "reconnect_delay" in given and "reconnect_delay_max" in given \
                and self.reconnect_delay_max < self.reconnect_delay:
            raise_problems([("reconnect_delay_max", f"must not be less than reconnect_delay "
                             f"({self.reconnect_delay:g} s)", self.reconnect_delay_max)])
        return self

    def reconnect_backoff(self, *, jitter: float = 0.0) -> Backoff:
        """The wait between connection attempts; a cap below the default first wait (only
        reconnect_delay_max set, say 500ms) lowers the first wait too."""
        return Backoff(min(self.reconnect_delay, self.reconnect_delay_max),
                       self.reconnect_delay_max, jitter=jitter)

    def poll_interval(self) -> float | None:
        """Seconds between polls when the source asks for its values on a schedule; None when
        the device pushes them (only on change, so silence is not a fault)."""
        return None

    def renamed_keys(self) -> tuple[str, ...]:
        """Old option names this entry was written with."""
        return self._renamed_keys


def deprecated_keys(config: CollectorConfig) -> list[Problem]:
    """One entry per old option name in the config, saying what to write instead."""
    return [
        Problem(f"machines[{mi}].sources[{si}].{old}",
                f"deprecated, write {RENAMED_SOURCE_KEYS[old]} (same meaning)")
        for mi, machine in enumerate(config.machines)
        for si, source in enumerate(machine.sources)
        for old in source.renamed_keys()
    ]


StateName = Literal["running", "idle", "stopped", "offline"]


def parse_clock(value: Any) -> Any:
    """"HH:MM"; an unquoted 06:00 reaches us as 360 (YAML 1.1 reads it in base 60)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1440:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


def parse_day_off(value: Any) -> Any:
    """A weekday name or a date; YAML reads an unquoted 2026-12-24 as a date."""
    return value.isoformat() if isinstance(value, date) else value


Clock = Annotated[str, BeforeValidator(parse_clock)]


class ShiftConfig(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    start: Clock
    end: Clock


class BreakConfig(Strict):
    start: Clock
    end: Clock


class DowntimeReason(Strict):
    code: Identifier
    label: str | None = None
    planned: bool = False  # a planned stop (tool change, cleaning): not planned production time


class PlantConfig(Strict):
    """The calendar every production figure is split by."""

    timezone: str = "UTC"
    shifts: list[ShiftConfig] = []
    breaks: list[BreakConfig] = []
    days_off: list[Annotated[str, BeforeValidator(parse_day_off)]] = []
    downtime_reasons: list[DowntimeReason] = []


class StateRule(Strict):
    state: StateName
    when: str


class CounterTag(Strict):
    tag: TagName
    width: Literal[8, 16, 32, 64] | None = None  # default: the tag's type width
    pulse: bool = False  # count rising edges (a bool or 0/1 tag) instead of a cumulative value
    # a drop smaller than this is noise, not a reset (default: every drop the width does not
    # explain is a reset)
    reset_below: float | None = Field(None, gt=0)


def _counter(value: Any) -> Any:
    return {"tag": value} if isinstance(value, str) else value


CounterRef = Annotated[CounterTag, BeforeValidator(_counter)]


class CountersConfig(Strict):
    """Cumulative counters; any two of total / good / reject (or one: total or good)."""

    total: CounterRef | None = None
    good: CounterRef | None = None
    reject: CounterRef | None = None


class ProductionConfig(Strict):
    states: list[StateRule] = []
    min_duration: Duration = 0.0  # a state shorter than this is absorbed by the one before it
    # no good reading of the rule tags for this long: offline (default: 3 polls, at least 5 s)
    offline_after: Duration | None = None
    counters: CountersConfig | None = None
    ideal_cycle: Duration | None = None
    energy: CounterRef | None = None  # a cumulative energy counter tag, kWh
    micro_stop: Duration = 120.0  # a stop shorter than this is a micro-stop, not a downtime


class MachineConfig(Strict):
    id: Identifier
    name: str | None = None
    area: str | None = None
    line: str | None = None
    sources: list[SourceConfig] = []
    production: ProductionConfig | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id


def default_box() -> str:
    """This box's id in a shared ledger: the host name, made a valid identifier."""
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name[:64] or "collector"


class CollectorConfig(Strict):
    # which collector box owns the machines below in a shared (central PostgreSQL) ledger
    box: Identifier = Field(default_factory=default_box)
    ledger: LedgerConfig = LedgerConfig()
    spool: SpoolConfig = SpoolConfig()
    pipeline: PipelineConfig = PipelineConfig()
    api: ApiConfig = ApiConfig()
    plant: PlantConfig = PlantConfig()
    machines: list[MachineConfig] = []

    # where the file was read from; relative paths (spool) are resolved against its folder
    base_dir: str = "."
    # the device profiles its sources use and where each merged tag was written
    _profiles: Any = PrivateAttr(default=None)

    def tag_origin(self, mi: int, si: int, ti: int) -> Any:
        """Where tag `ti` of source `si` of machine `mi` was written when it came from a
        device profile (`collector.profiles.TagOrigin`), else None."""
        return self._profiles.origin(mi, si, ti) if self._profiles is not None else None

    def counts(self) -> tuple[int, int, int]:
        sources = [s for m in self.machines for s in m.sources]
        return len(self.machines), len(sources), sum(len(s.tags) for s in sources)

    def spool_path(self) -> Path:
        path = Path(self.spool.path) if self.spool.path else Path("collector-spool.db")
        return path if path.is_absolute() else Path(self.base_dir) / path


SourceModels = Mapping[str, type[SourceConfig]]  # by protocol name
_accepted: dict[str, type[SourceConfig]] = {}


def accept_source_model(protocol: str, model: type[SourceConfig]) -> None:
    """Accept `sources` entries with `protocol: <protocol>`, validated by `model` (each
    adapter's registration calls this)."""
    _accepted[protocol] = model


def source_models() -> dict[str, type[SourceConfig]]:
    """The source models accepted so far, by protocol name."""
    return dict(_accepted)


def config_model(sources: SourceModels | None = None) -> type[CollectorConfig]:
    """CollectorConfig whose `sources` accept the given source models (default: every model
    accepted so far)."""
    return _config_model(tuple((_accepted if sources is None else sources).values()))


def _no_adapters(value: Any) -> Any:
    if value:
        raise ValueError("no adapter is loaded to read sources entries (load them first: "
                         "adapters.base.registry())")
    return value


@cache
def _config_model(models: tuple[type[SourceConfig], ...]) -> type[CollectorConfig]:
    source_union: Any = (Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007
                         if models else Annotated[SourceConfig, BeforeValidator(_no_adapters)])
    machine = create_model(
        "MachineConfig", __base__=MachineConfig, sources=(list[source_union], [])
    )
    return create_model("CollectorConfig", __base__=CollectorConfig, machines=(list[machine], []))


def resolve_config_path(path: str | None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path, sources: SourceModels | None = None) -> CollectorConfig:
    """Read, substitute `${ENV}`, validate and cross-check a config file; `sources` entries
    are validated by the `sources` models (default: every model accepted so far)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem("", f"config file {str(path)!r} not found")]) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read config file {str(path)!r}: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = None if _binary(raw) else raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([Problem("", _not_text(raw, exc.start), line)]) from None
    return parse_config(text, base_dir=str(path.parent.resolve()), sources=sources)


def _binary(raw: bytes) -> bool:
    return b"\0" in raw[:1024] or raw.count(b"\n") < 1


def _not_text(raw: bytes, at: int) -> str:
    if _binary(raw):
        return ("not a text file (it holds binary data): a config is YAML text; check that -c "
                "names the config and not another file")
    return (f"not UTF-8 text: byte 0x{raw[at]:02x} is not UTF-8; save the file as UTF-8 (most "
            f"editors offer it under 'Save as' or 'Encoding')")


# libyaml's parser when PyYAML has it: the same documents, a fifth of the time, and far fewer
# short-lived objects (the pure-Python parser's tokens and events for 20,000 tags left ~150 MB
# of heap behind); the pure-Python one words the errors (with the line's text)
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def _load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The document as data, and as nodes (for line numbers)."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER), yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass  # the pure-Python parser below says what is wrong, and where
    return yaml.safe_load(text), yaml.compose(text)


def _has_duplicate_keys(text: str) -> bool:
    """Whether a mapping of the document has a key twice (`duplicate_keys` says where), from
    the parser's events: no node tree is built."""
    assert _FAST_LOADER is not None
    keys: list[set[str] | None] = []  # per open mapping its keys, None for a sequence
    key_next: list[bool] = []  # per open collection: whether a mapping's key comes next
    for event in yaml.parse(text, Loader=_FAST_LOADER):
        if isinstance(event, yaml.CollectionEndEvent):
            keys.pop()
            key_next.pop()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        if keys and keys[-1] is not None:
            if key_next[-1]:
                name = event.value if isinstance(event, yaml.ScalarEvent) else None
                if name is not None and name != "<<":
                    if name in keys[-1]:
                        return True
                    keys[-1].add(name)
            key_next[-1] = not key_next[-1]
        if isinstance(event, yaml.MappingStartEvent):
            keys.append(set())
            key_next.append(True)
        elif isinstance(event, yaml.SequenceStartEvent):
            keys.append(None)
            key_next.append(False)
    return False


def parse_config(text: str, base_dir: str = ".",
                 sources: SourceModels | None = None) -> CollectorConfig:
    # A valid config is read without YAML nodes: they exist only to give problems their
    # lines, and 20,000 tags' nodes took ~100 MB that the heap kept after they were gone.
    # When there is anything to say, the config is read again with them.
    if _FAST_LOADER is not None:
        try:
            data = yaml.load(text, Loader=_FAST_LOADER)
            clean = not _has_duplicate_keys(text)
        except yaml.YAMLError:
            clean = False
        if clean:
            try:
                return _parse(data, None, base_dir, sources)
            except ConfigError:
                pass
    try:
        data, node = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_problem(exc)]) from None
    return _parse(data, node, base_dir, sources)


def _parse(data: Any, node: yaml.Node | None, base_dir: str,
           sources: SourceModels | None) -> CollectorConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the config must be a mapping with keys such as 'ledger' and 'machines'", 1)])

    problems: list[Problem] = list(duplicate_keys(node))
    secrets = Secrets()
    data = _substitute_env(data, (), problems, node, secrets)
    data.pop("base_dir", None)
    data["base_dir"] = base_dir
    profiles = apply_profiles(data, node, base_dir, problems)
    try:
        config = config_model(sources).model_validate(data)
    except ValidationError as exc:
        protocols = list(_accepted if sources is None else sources)
        problems += [profiles.relocate(_problem_from_error(err, node, protocols, secrets), node)
                     for err in exc.errors(include_url=False)]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    problems = list(cross_check(config))
    if problems:
        for i, p in enumerate(problems):
            problems[i] = profiles.relocate(
                Problem(p.path, p.message, _line_of(node, _parse_loc(p.path))), node)
        raise ConfigError(problems)
    config._profiles = profiles
    return config


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(value: Any, loc: tuple[Any, ...], problems: list[Problem], node: Any,
                    secrets: Secrets) -> Any:
    if isinstance(value, str):
        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append(
                    Problem(format_path(loc), f"environment variable {name} is not set "
                            f"(export it, or write the value instead of ${{{name}}})",
                            _line_of(node, loc))
                )
                return ""
            secrets.values.add(os.environ[name])
            return os.environ[name]
        out = _ENV.sub(repl, value)
        if out != value:
            secrets.values.add(out)
        return out
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*loc, k), problems, node, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*loc, i), problems, node, secrets) for i, v in enumerate(value)]
    return value


# fields whose values are never repeated in a message, wherever they came from
SECRET_FIELDS = frozenset({"api_keys", "write_keys", "password", "private_key", "secret", "token"})
MASK = "***"


@dataclass
class Secrets:
    """What a config's messages must not repeat: every value that came from `${ENV}`."""

    values: set[str] = field(default_factory=set)

    def mask(self, message: str, loc: tuple[Any, ...], given: Any) -> str:
        """The message with secret values replaced by ***: the value given at a secret field,
        and every text that came from the environment."""
        hidden = {v for v in self.values if v}
        if any(isinstance(part, str) and part in SECRET_FIELDS for part in loc):
            hidden |= _texts_in(given)
        for value in sorted(hidden, key=len, reverse=True):
            message = message.replace(repr(value), repr(MASK)).replace(value, MASK)
        return message


def _texts_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {t for k, v in value.items() for t in (*_texts_in(k), *_texts_in(v))}
    if isinstance(value, list | tuple):
        return {t for v in value for t in _texts_in(v)}
    return {str(value)} if value is not None and str(value) else set()


def cross_check(config: CollectorConfig) -> Iterator[Problem]:
    """Rules that span several entries: unique machine ids, source ids and tag names; the
    plant calendar and the production rules."""
    yield from _plant_problems(config.plant)
    for path, message in production_problems(config):
        yield Problem(path, message)
    machines: dict[str, int] = {}
    for mi, machine in enumerate(config.machines):
        if machine.id in machines:
            yield Problem(f"machines[{mi}].id",
                          f"duplicate machine id {machine.id!r} (also machines[{machines[machine.id]}])")
        machines.setdefault(machine.id, mi)
        sources: dict[str, int] = {}
        tags: dict[str, str] = {}
        for si, source in enumerate(machine.sources):
            spath = f"machines[{mi}].sources[{si}]"
            if source.id in sources:
                yield Problem(f"{spath}.id", f"duplicate source id {source.id!r} in machine "
                              f"{machine.id!r} (also machines[{mi}].sources[{sources[source.id]}])")
            sources.setdefault(source.id, si)
            for ti, tag in enumerate(source.tags):
                tpath = f"{spath}.tags[{ti}]"
                if tag.name in tags:
                    yield Problem(f"{tpath}.name", f"duplicate tag name {tag.name!r} in machine "
                                  f"{machine.id!r} (also {tags[tag.name]}); tag names are unique per machine")
                tags.setdefault(tag.name, tpath)


def _plant_problems(plant: PlantConfig) -> Iterator[Problem]:
    shifts = [(s.name, s.start, s.end) for s in plant.shifts]
    breaks = [(b.start, b.end) for b in plant.breaks]
    for path, message in calendar_problems(shifts, breaks, plant.days_off, plant.timezone):
        yield Problem(f"plant.{path}" if path else "plant", message)
    codes: dict[str, int] = {}
    for i, reason in enumerate(plant.downtime_reasons):
        if reason.code in codes:
            yield Problem(f"plant.downtime_reasons[{i}].code",
                          f"duplicate reason code {reason.code!r} (also "
                          f"downtime_reasons[{codes[reason.code]}])")
        codes.setdefault(reason.code, i)


_FRIENDLY = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field; check the spelling against the README",
}


def _problem_from_error(err: Any, node: Any, protocols: list[str], secrets: Secrets) -> Problem:
    problem = _describe_error(err, node, protocols)
    return Problem(problem.path, secrets.mask(problem.message, _parse_loc(problem.path),
                                              err.get("input")), problem.line)


def _describe_error(err: Any, node: Any, protocols: list[str]) -> Problem:
    loc = _clean_loc(err["loc"], protocols)
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in _FRIENDLY:
        message = _FRIENDLY[kind]
        if kind == "extra_forbidden":
            message = f"unknown field {str(loc[-1])!r}; check the spelling against the README"
    elif kind == "literal_error":
        message = f"{value!r} is not one of {ctx.get('expected', '')}"
    elif kind == "union_tag_invalid":
        message = f"protocol {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
        loc = (*loc, "protocol")
    elif kind == "union_tag_not_found":
        message = f"'protocol' is missing; use one of {', '.join(map(repr, protocols))}"
        loc = (*loc, "protocol")
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} may only contain {_pattern_words(ctx.get('pattern', ''))}"
    elif kind == "list_type":
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        message = f"must be a list, one '- item' per line or [a, b]{shown}"
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", err["msg"]))
    else:
        message = f"{err['msg']} (got {value!r})" if not isinstance(value, dict | list) else err["msg"]
    return Problem(format_path(loc), message, _line_of(node, loc))


def _pattern_words(pattern: str) -> str:
    if "_-" in pattern:
        return "lowercase letters, digits, '_' and '-'"
    if "_" in pattern:
        return "lowercase letters, digits and '_'"
    return f"characters matching {pattern}"


def _clean_loc(loc: tuple[Any, ...], protocols: list[str]) -> tuple[Any, ...]:
    """Drop the labels pydantic inserts into a path: union tags (`sources.0.modbus.tags`)
    and validator names (`function-after[...]`)."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and (
            part.startswith(("function-", "tagged-union[", "union["))
            or (len(out) >= 2 and out[-2] == "sources" and isinstance(out[-1], int)
                and part in protocols)
        ):
            continue
        out.append(part)
    return tuple(out)


def _parse_loc(path: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        out.append(name if name else int(index))
    return tuple(out)
