"""Where ClaimScore keeps its state, read in one place.

Settings come from, in increasing priority:
1. built-in defaults (everything under ``./.claimscore/``);
2. a TOML file: ``$CLAIMSCORE_CONFIG`` if set, else ``./claimscore.toml`` if present;
3. environment variables ``CLAIMSCORE_<KEY>`` for each key below (e.g. ``CLAIMSCORE_HOME``,
   ``CLAIMSCORE_HISTORY_URL``).

Example ``claimscore.toml``::

    home = "/var/lib/claimscore"
    history_url = "postgresql+psycopg2://claimscore@127.0.0.1:5432/claimscore"
    phone_country_code = "44"
    phone_trunk_prefix = "0"

The secret personal identifiers are hashed with comes from ``CLAIMSCORE_IDENTITY_SECRET``; without it
the public demo secret is used (with a warning), and ``claimscore serve`` refuses to start unless
``demo = true`` (``CLAIMSCORE_DEMO=1``) or ``--demo``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from features.errors import ConfigError

ENV_PREFIX = "CLAIMSCORE_"
MONITORING_SUMMARY_FILE = "summary.json"
MONITORING_REPORT_FILE = "report.html"
"""What each monitoring run writes (in its folder and in :attr:`Settings.monitoring_latest_dir`)."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".claimscore")
    """State directory: MLflow store, artifacts, reports, keys, service state."""
    mlflow_tracking_uri: str = ""
    """Defaults to a SQLite file in ``home``."""
    history_url: str = ""
    """SQLAlchemy URL of the claim history store; defaults to a SQLite file in ``home``."""
    decision_log_url: str = ""
    """SQLAlchemy URL of the decision log; defaults to a SQLite file in ``home``."""
    cases_url: str = ""
    """SQLAlchemy URL of the investigators' case store and page sessions; defaults to a SQLite file in ``home``."""
    siu_sla_days: float = 14.0
    """Calendar days from opening (or reopening) an SIU referral's case to its due date."""
    specialist_sla_days: float = 7.0
    """Calendar days from opening (or reopening) a specialist case to its due date."""
    rate_limit_per_second: float = 1000.0
    """Requests a second each API key may make to each worker (token bucket, bursts of a second's
    worth); over it, 429 with ``Retry-After``. Set it to what each claim system needs: it bounds how
    fast one key can probe claimant histories through /score. 0: no limit."""
    session_hours: float = 8.0
    """How long an investigator's sign-in to the pages lasts."""
    identity_secret: str = field(default="", repr=False)
    """Key of the HMAC that personal identifiers (phone, address, account) are hashed with on every
    path in (:mod:`features.identity`). Unset: a public built-in secret, for demos only; the service
    refuses it unless ``demo`` is set. Keep it out of the TOML file in production: use
    ``CLAIMSCORE_IDENTITY_SECRET``. Changing it unlinks every claim hashed before: reload the history."""
    phone_country_code: str = "61"
    """Country calling code given to national phone numbers before hashing ("" : digits as written)."""
    phone_trunk_prefix: str = "0"
    """National trunk prefix replaced by the country code ("0412..." -> "61412...")."""
    shadow: str = ""
    """What the service decides in the shadow of the champion, for every claim, logged beside the
    champion's decision and never answered: ``challenger`` (the registry's challenger models with
    their policy) or the path of a routing policy file (the champion's models under that policy;
    ``claimscore backtest --optimise`` writes one). Empty: nothing. ``claimscore backtest`` without
    ``--data`` compares the two on the decision log."""
    demo: bool = False
    """A demo (``make demo``, ``claimscore serve --demo``): the service may run with the built-in secret."""
    shared_data: Path = Path("../shared/data")
    """Folder holding the public data sets (never copied into the repository)."""

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def monitoring_latest_dir(self) -> Path:
        """Where ``claimscore monitor`` keeps its latest run's ``report.html`` and ``summary.json``
        (the service's gauges and the workbench's monitoring page read them there)."""
        return self.reports_dir / "monitoring" / "latest"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    def resolved(self) -> Settings:
        """Fill the store URLs that default to files under ``home``."""
        home = self.home.expanduser().resolve()
        return replace(
            self,
            home=home,
            mlflow_tracking_uri=self.mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}",
            history_url=self.history_url or f"sqlite:///{home / 'history.db'}",
            decision_log_url=self.decision_log_url or f"sqlite:///{home / 'decisions.db'}",
            cases_url=self.cases_url or f"sqlite:///{home / 'cases.db'}",
        )

    def ensure_dirs(self) -> Settings:
        for d in (self.home, self.reports_dir, self.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


_PATH_KEYS = {"home", "shared_data"}
_BOOL_KEYS = {"demo"}
_NUMBER_KEYS = {"siu_sla_days", "specialist_sla_days", "session_hours", "rate_limit_per_second"}
_ZERO_OK = {"rate_limit_per_second"}
_RENAMED = {"hash_salt": "identity_secret (an HMAC key; identifiers hashed with the old salt must be reloaded)"}


def _coerce(key: str, value: object, origin: str) -> object:
    if key in _BOOL_KEYS:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{origin}: '{key}' must be true or false, got {value!r}")
    if key in _NUMBER_KEYS:
        try:
            number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        lowest_ok = number >= 0 if key in _ZERO_OK and number is not None else number is not None and number > 0
        if number is None or not lowest_ok or not number < float("inf"):
            raise ConfigError(f"{origin}: '{key}' must be a positive number, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: '{key}' must be a string, got {type(value).__name__}")
    return Path(value) if key in _PATH_KEYS else value


def load_settings(config_file: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read defaults, then the config file, then environment overrides."""
    env = dict(os.environ if env is None else env)
    known = {f.name for f in fields(Settings)}
    values: dict[str, object] = {}

    path = Path(config_file) if config_file else None
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
        if not path.is_file():
            raise ConfigError(f"CLAIMSCORE_CONFIG points at {path}, which is not a file")
    if path is None and Path("claimscore.toml").is_file():
        path = Path("claimscore.toml")
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key in _RENAMED:
                raise ConfigError(f"config file {path}: '{key}' was replaced by {_RENAMED[key]}")
            if key not in known:
                raise ConfigError(f"config file {path}: unknown key '{key}' (known: {', '.join(sorted(known))})")
            values[key] = _coerce(key, value, f"config file {path}")

    for key in known:
        env_value = env.get(ENV_PREFIX + key.upper())
        if env_value:
            values[key] = _coerce(key, env_value, f"environment {ENV_PREFIX + key.upper()}")
    if "mlflow_tracking_uri" not in values and env.get("MLFLOW_RUN_ID") and env.get("MLFLOW_TRACKING_URI"):
        # inside `mlflow run`: use the project run's store. (Not otherwise: mlflow.set_tracking_uri
        # writes this variable into the process environment, so it may be stale.)
        values["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
    return Settings(**values).resolved()  # type: ignore[arg-type]


def read_yaml(path: str | os.PathLike, what: str) -> dict:
    """A YAML file's top-level mapping (empty for an empty file), or a :class:`ConfigError` naming
    ``what`` (e.g. "training config") and the file: missing, not YAML, or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping of keys to values")
    return data


def load_yaml_model(path: str | os.PathLike | None, model: type, what: str):
    """``model()`` (a pydantic model's defaults), overridden by a YAML file's keys; a
    :class:`ConfigError` naming ``what``, the file and the key otherwise."""
    from pydantic import ValidationError

    if path is None:
        return model()
    data = read_yaml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{what} {path}: {invalid(exc)}") from None


def invalid(exc: Exception) -> str:
    """A pydantic ``ValidationError``'s first error as ``key.path: message``."""
    err = exc.errors()[0]  # type: ignore[attr-defined]
    return f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
