"""The mapping language: how a table of claims becomes the canonical claims schema.

A mapping is a YAML file. The built-in sources (``synthetic``, ``vehicle_fraud``,
``aus_bodily_injury``) are mapping files in this folder: read them as worked examples. To map your
own table, write a file like the one below and pass ``--source mapping:path/to/file.yaml``.

Top-level keys (only these are allowed; a misspelt key is an error)::

    name: my_claims                 # required; a short name for reports
    description: >-                 # what the data is, where it comes from, its limits
      Motor claims exported from our claims system, 2019-2024.
    default_data: claims.csv        # optional: file looked up in settings.shared_data when no data is given
    read:                           # how to read the table (all optional)
      format: csv                   # csv | parquet | sql; default: from the file extension
                                    #   (.csv .tsv .txt -> csv, .parquet .pq -> parquet, .db .sqlite -> sql)
      encoding: utf-8               # csv only; e.g. latin-1 or cp1252 for older exports
      sep: ","                      # csv only
      url: "sqlite:///claims.db"    # sql only; a SQLAlchemy URL (a URL or .db file given as data wins)
      query: "SELECT * FROM claims" # sql only; required for sql
    identity: false                 # true: the columns already have canonical names and types
    id_columns: [PolicyNo]          # source columns that are identifiers: they may feed identifier
                                    #   fields (claim_id, policy_id, ...) but never extras or other fields;
                                    #   like every column feeding an identifier field, read from CSV as
                                    #   text (leading zeros kept)
    exclude:                        # rows dropped on purpose; each count is reported
      - where: "Status == 'void'"   # a pandas expression over the SOURCE columns (`back ticks` for
        reason: "voided claims"     #   names with spaces); rows where it is true are dropped
    fields:                         # canonical field -> how to compute it (see "Column specs")
      claim_id: {column: ClaimNo}
    extras:                         # attributes the schema lacks -> columns x_<name> (model features)
      garage_band: {column: Garage, type: category, description: "Garage tier"}
    labels:                         # canonical outcome columns: from a column or a rule
      fraud_confirmed: {column: Fraud, map: {"Y": true, "N": false}}
      simple_settlement: {rule: "settlement_days <= 30 and legal_representation == False"}
    null_rates: {claimant_age: 0.2} # per-field overrides of the schema's max_null_rate for this source
    supplies: [claimed_amount]      # canonical fields every table of this source has (mapped fields and
                                    #   labels count already; list them for identity tables): a table
                                    #   without one fails validation, naming it

Column specs
    Each entry under ``fields``, ``extras`` and ``labels`` takes exactly ONE source:

    ``column: Name``            the source column as it is
    ``value: motor``            the same constant on every row
    ``row_number: true``        1, 2, 3 ... : the row's position in the source table, counted before
                                exclusions (so ids do not shift when an exclusion changes); for
                                tables without an id
    ``week_date: {...}``        a date from parts: ``month`` (Jan/January or 1-12), ``week_of_month``
                                (1-5), ``day_of_week`` (Mon/Monday ...), and either ``year`` (a column)
                                or ``after: <canonical date field>``. Week k of a month is days
                                7k-6 .. 7k; the date is the day in that block with the named weekday.
                                A weekday that falls past the month's end (week 5 only) is set to the
                                month's last day. With ``after``, the year is the other field's year,
                                rolled forward by one when the month is earlier than that field's month
                                (a December accident reported in January); a date that still comes out
                                before the other field (same month, earlier week or weekday: the parts
                                contradict each other) is set equal to it. Both adjustments are counted
                                in ``LoadedClaims.adjusted``.
    ``worst_of: [A, B, C]``     the worst value across several columns, by ``order`` (best to worst);
                                ``map`` is applied to each column first; all-null -> null
    ``count_of: {...}``         how many of several columns hold a value, per row: ``columns`` (the
                                columns, e.g. one per injured person) and ``value`` (one value, or a
                                list of values that all count). For int or float fields and float
                                extras; takes no other step. A row where every column is null -> null
                                (nothing recorded); otherwise nulls are not counted, so a value such as
                                "not recorded" must be counted with its own field to stay explicit.
                                E.g. ``injuries_minor: {count_of: {columns: [Inj1, Inj2], value: minor}}``
    ``rule: "expression"``      labels only; see "Rules"

    and any of these steps, applied in this order:

    ``null_if: [0, "n/a"]``     these source values mean "unknown" -> null
    ``map: {"Y": true}``        translate values; values not listed are kept as they are, so the
                                schema check reports them (map a value to ``null`` to drop it)
    ``scale: 0.01``             multiply (e.g. cents -> currency units)
    ``format: "%d/%m/%Y"``      parse dates with this strptime format (default: ISO 8601, then any
                                recognisable form)
    ``hash: true``              replace by the identity hash (features/identity.py): trimmed, inner
                                spaces collapsed, then HMAC-SHA256 keyed with identity_secret,
                                written "h1:" + 32 hex digits; a value that is such a hash already
                                is kept. The schema's personal fields (phone, address, payee_account)
                                are ALWAYS hashed, each after its own normalisation (phone digits
                                with the country code; address case, spaces, punctuation; account
                                letters and digits); use ``hash: true`` for other identifiers that
                                are personal data (e.g. a national id used as claimant_id)
    ``prefix: "VF-"``           prepend text (identifiers)

    Values (in ``null_if``, ``map``, ``order``) are matched as text: 1, 1.0 and "1" all match ``1``;
    text is matched exactly (case-sensitive) after trimming spaces; only week_date's month and
    weekday names ignore case. In these files ``yes``/``no``/``on``/``off`` are plain text; only
    ``true``/``false`` are booleans, and repeating a key is an error. Dates with a time zone are
    converted to UTC; dates pandas cannot hold (before 1677, after 2262) become null and are reported.
    Every value a step cannot read becomes null and is listed in ``LoadedClaims.type_problems``.

Extras
    Extras need ``type`` and ``description``. ``type: category`` keeps text; ``type: float`` reads
    numbers; ``type: ordinal`` turns text into its position in ``order`` (0, 1, 2 ...) as a float.
    Values an extra cannot read become null and are reported as type problems, never dropped silently.

Rules
    A rule is a pandas ``DataFrame.eval`` expression (``and``, ``or``, ``not``, comparisons,
    arithmetic) over the CANONICAL frame after fields are mapped: canonical names, canonical types
    (compare booleans with ``== True`` / ``== False``), any ``x_`` extras, any label defined above it,
    and two helpers: ``settlement_days`` (settlement_date - report_date) and ``reporting_delay_days``
    (report_date - incident_date), in days. A rule must give true/false for every row; a row where
    any name the rule uses is null gets a null label. A rule replaces a column of the same name the
    table may already have (so the same label definition holds for every file of a source).

Identity mappings
    With ``identity: true`` the table already uses canonical names: canonical columns are taken as
    they are, ``x_`` columns pass through as extras (numbers as float, anything else as category),
    other columns are ignored (and listed in ``LoadedClaims.ignored_columns``). ``fields``, ``extras``
    and ``labels`` may still be given: they override or add columns.
"""

from __future__ import annotations

import codecs
import difflib
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features import schema
from features.errors import MappingError

SOURCE_KEYS = ("column", "value", "row_number", "week_date", "worst_of", "count_of", "rule")
WEEK_PARTS = ("year", "month", "week_of_month", "day_of_week")
_EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadSpec(_Strict):
    format: Literal["csv", "parquet", "sql"] | None = None
    encoding: str = "utf-8"
    sep: str = ","
    url: str | None = None
    query: str | None = None


class WeekDate(_Strict):
    year: str | None = None
    month: str
    week_of_month: str
    day_of_week: str
    after: str | None = None

    @model_validator(mode="after")
    def _one_year(self) -> WeekDate:
        if (self.year is None) == (self.after is None):
            raise ValueError("give exactly one of 'year' (a column) or 'after' (a canonical date field)")
        return self


class CountOf(_Strict):
    columns: list[str] = Field(min_length=1)
    value: Any

    @property
    def values(self) -> list[Any]:
        return list(self.value) if isinstance(self.value, list) else [self.value]

    @model_validator(mode="after")
    def _some_value(self) -> CountOf:
        if self.value is None or self.value == []:
            raise ValueError("count_of needs a 'value' to count (a value or a list of values)")
        return self


class Exclusion(_Strict):
    where: str
    reason: str


class ColumnSpec(_Strict):
    """How to compute one column. Exactly one source key; optional steps."""

    column: str | None = None
    value: Any = None
    row_number: bool | None = None
    week_date: WeekDate | None = None
    worst_of: list[str] | None = Field(default=None, min_length=1)
    count_of: CountOf | None = None
    order: list[Any] | None = Field(default=None, min_length=1)
    null_if: list[Any] | None = None
    map: dict[Any, Any] | None = None
    scale: float | None = None
    format: str | None = None
    hash: bool = False
    prefix: str | None = None

    @property
    def kind(self) -> str:
        return next(k for k in SOURCE_KEYS if k in self.model_fields_set)

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSpec:
        given = [k for k in SOURCE_KEYS if k in self.model_fields_set]
        if len(given) != 1:
            allowed = [k for k in SOURCE_KEYS if k in type(self).model_fields]
            what = "none" if not given else ", ".join(given)
            raise ValueError(f"give exactly one of {', '.join(allowed)} (got {what})")
        if self.row_number is False:
            raise ValueError("row_number must be true")
        if self.worst_of is not None and self.order is None:
            raise ValueError("worst_of needs an 'order' (best to worst)")
        if self.count_of is not None:
            steps = [k for k in _COUNT_OF_FORBIDS if k in self.model_fields_set]
            if steps:
                raise ValueError(f"count_of takes no other step (got {', '.join(steps)})")
        return self

    def source_columns(self) -> list[str]:
        if self.column is not None:
            return [self.column]
        if self.worst_of is not None:
            return list(self.worst_of)
        if self.count_of is not None:
            return list(self.count_of.columns)
        if self.week_date is not None:
            return [getattr(self.week_date, p) for p in WEEK_PARTS if getattr(self.week_date, p)]
        return []


_COUNT_OF_FORBIDS = ("order", "null_if", "map", "scale", "format", "hash", "prefix")


class FieldSpec(ColumnSpec):
    pass


class LabelSpec(ColumnSpec):
    rule: str | None = None


class ExtraEntry(ColumnSpec):
    type: Literal["category", "float", "ordinal"]
    description: str = Field(min_length=1)


class Mapping(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    default_data: str | None = None
    read: ReadSpec = ReadSpec()
    identity: bool = False
    id_columns: list[str] = []
    exclude: list[Exclusion] = []
    fields: dict[str, FieldSpec] = {}
    extras: dict[str, ExtraEntry] = {}
    labels: dict[str, LabelSpec] = {}
    null_rates: dict[str, float] = {}
    supplies: list[str] = []
    """Canonical fields every table of this source has (for identity tables; mapped fields and labels
    are supplied anyway): a table lacking one fails validation, naming it."""

    @field_validator("supplies")
    @classmethod
    def _canonical_supplies(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in schema.BY_NAME]
        if unknown:
            raise ValueError(f"unknown canonical field(s): {', '.join(unknown)}")
        return names

    def supplied_fields(self) -> list[str]:
        """Canonical fields this source supplies, in schema order: what it maps and what it lists."""
        named = {*self.fields, *self.labels, *self.supplies}
        return [c for c in schema.COLUMNS if c in named]

    def source_columns(self) -> list[str]:
        """Source columns the fields, extras and labels read, in first-use order."""
        specs: list[ColumnSpec] = [*self.fields.values(), *self.extras.values(), *self.labels.values()]
        return list(dict.fromkeys(c for s in specs for c in s.source_columns()))


# --- reading and checking a mapping file --------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style booleans (``Yes``/``No`` stay text) and no silently repeated keys."""


_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_mapping(text: str, origin: str = "<mapping>") -> Mapping:
    """Parse and check mapping YAML; any problem is a one-line :class:`MappingError`."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MappingError(f"mapping {origin}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise MappingError(f"mapping {origin}: expected keys such as name, read, fields; got {got}")
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(f"mapping {origin}: {_describe(exc)}") from None
    problems = check_mapping(mapping)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise MappingError(f"mapping {origin}: " + "; ".join(problems[:3]) + more)
    return mapping


def read_mapping(path: str | Path) -> Mapping:
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise MappingError(f"mapping file {path} {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(f"mapping file {path}: not valid UTF-8 at byte {exc.start}") from None
    return parse_mapping(text, str(path))


def _describe(exc: ValidationError) -> str:
    parts = []
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")  # misspelt keys first
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1])
            hint = _did_you_mean(loc[-1], allowed)
            where = ".".join(loc[:-1]) or "top level"
            parts.append(f"{where}: unknown key '{loc[-1]}'{hint} (allowed: {', '.join(allowed)})")
            continue
        parts.append(f"{'.'.join(loc) or 'top level'}: {_message(err)}")
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + more


_SHAPES = {
    "dict_type": "key: value pairs (a YAML mapping)",
    "list_type": "a list",
    "string_type": "text",
    "bool_type": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
}


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] in _SHAPES:
        got = err.get("input")
        shown = "nothing" if got is None else f"{type(got).__name__} {got!r}"[:60]
        return f"should be {_SHAPES[err['type']]}, got {shown}"
    return str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys of the model at ``loc`` (walking models, dicts and lists from :class:`Mapping`)."""
    current: Any = Mapping
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current = current.model_fields[part].annotation
        while True:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            origin = typing.get_origin(current)
            if origin in (dict, list) and parts:
                parts.pop(0)
                current = args[-1]
            elif origin is not None and len(args) == 1:
                current = args[0]
            else:
                break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_mapping(m: Mapping) -> list[str]:
    """Checks beyond the shape of the YAML: canonical names, types, identifiers. One line each."""
    out: list[str] = []
    ids = set(m.id_columns)
    for section, specs in (("fields", m.fields), ("labels", m.labels)):
        for name, spec in specs.items():
            field = schema.BY_NAME.get(name)
            if field is None:
                out.append(f"{section}.{name}: unknown canonical field{_did_you_mean(name, schema.COLUMNS)}")
                continue
            out += _check_spec(f"{section}.{name}", spec, field.dtype, ids, m)
            if section == "labels" and field.stage == "notice":
                out.append(f"labels.{name}: a label must be an outcome field, not a notice field")
            if section == "labels" and name in m.fields:
                out.append(f"labels.{name}: also defined under fields")
    for name, spec in m.extras.items():
        where = f"extras.{name}"
        if not _EXTRA_NAME.match(name):
            out.append(f"{where}: name must be lower_snake_case (it becomes column {schema.EXTRA_PREFIX}{name})")
        if spec.type == "ordinal" and spec.order is None:
            out.append(f"{where}: an ordinal extra needs 'order' (lowest to highest)")
        if spec.order is not None and spec.type != "ordinal" and spec.worst_of is None:
            out.append(f"{where}: 'order' is only for ordinal extras or worst_of")
        used = ids.intersection(spec.source_columns())
        if used:
            out.append(f"{where}: reads identifier column(s) {', '.join(sorted(used))}; identifiers are never features")
        dtype = {"category": "category", "float": "float", "ordinal": "category"}[spec.type]
        out += _check_spec(where, spec, dtype, set(), m)
    for name in m.null_rates:
        if name not in schema.BY_NAME:
            out.append(f"null_rates.{name}: unknown canonical field{_did_you_mean(name, schema.COLUMNS)}")
        elif schema.BY_NAME[name].required:
            out.append(f"null_rates.{name}: a required field may never be null")
        elif not 0.0 <= m.null_rates[name] <= 1.0:
            out.append(f"null_rates.{name}: must be between 0 and 1")
    if not m.identity:
        missing = [c for c in schema.REQUIRED if c not in m.fields]
        if missing:
            out.append(f"fields: required canonical field(s) not defined: {', '.join(missing)}")
    try:
        codecs.lookup(m.read.encoding)
    except LookupError:
        out.append(f"read.encoding: unknown encoding '{m.read.encoding}'")
    if m.read.format == "sql" and not m.read.query:
        out.append("read.query: required when read.format is sql")
    return out


def _check_spec(where: str, spec: ColumnSpec, dtype: str, ids: set[str], m: Mapping) -> list[str]:
    out: list[str] = []
    if spec.week_date is not None and dtype != "datetime":
        out.append(f"{where}: week_date gives a date, but this field is {dtype}")
    after = spec.week_date.after if spec.week_date else None
    if after is not None:
        target = m.fields.get(after)
        if target is None or schema.BY_NAME.get(after, None) is None or schema.BY_NAME[after].dtype != "datetime":
            out.append(f"{where}.week_date.after: '{after}' must be a date field defined under fields")
        elif target.week_date is not None and target.week_date.after is not None:
            out.append(f"{where}.week_date.after: '{after}' must not itself use 'after'")
    if spec.count_of is not None and dtype not in ("int", "float"):
        out.append(f"{where}: count_of gives a number, but this field is {dtype}")
    if spec.format is not None and dtype != "datetime":
        out.append(f"{where}: 'format' is only for date fields")
    if spec.scale is not None and dtype not in ("float", "int"):
        out.append(f"{where}: 'scale' is only for numeric fields")
    if spec.hash and dtype != "id":
        out.append(f"{where}: 'hash' is only for identifier fields")
    if isinstance(spec, LabelSpec) and spec.rule is not None and dtype != "bool":
        out.append(f"{where}: a rule gives true/false, but this field is {dtype}")
    used = ids.intersection(spec.source_columns())
    if used and dtype != "id":
        out.append(
            f"{where}: reads identifier column(s) {', '.join(sorted(used))}; "
            "identifiers may only feed identifier fields"
        )
    return out
