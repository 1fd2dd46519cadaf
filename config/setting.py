"""What a row of the settings table is (``Setting``), and the parsers that turn
a variable's text into its value."""

from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message is one line for operators."""


# A parser turns the variable's text into the value, or None for "not given"
# (the default then applies). Its ValueError's message follows the name.


def text(raw: str) -> str:
    return raw


def optional(raw: str) -> str | None:
    """Text where an empty value counts as unset."""
    return raw or None


def integer(raw: str) -> int | None:
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be an integer, got {raw!r}") from None


def boolean(raw: str) -> bool:
    if raw.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


SAME = object()  # as a testing or production default: the development one
REQUIRED = object()  # no default: that environment refuses to start without it


@dataclass(frozen=True)
class Generated:
    """A default made anew each time the settings are read."""

    label: str  # as the configuration page shows it
    make: Callable[[], Any]


# A check gets (name, value, settings), ``settings`` holding every value read,
# and returns the one-line refusal, or None.
Check = Callable[[str, Any, dict], "str | None"]


@dataclass(frozen=True)
class Setting:
    """One environment variable. A default is written as the environment would
    give it and goes through the same parser; ``testing`` and ``production``
    replace the development default where they differ. ``bounds`` (low, high
    or None) and ``choices`` are checked before ``check``, and none of them,
    nor REQUIRED, when ``only_if`` (given every setting) says the setting is
    not used."""

    name: str
    parse: Callable[[str], Any]
    default: str | None | Generated
    doc: str
    check: Check | None = None
    bounds: tuple[int, int | None] | None = None
    choices: tuple[str, ...] | None = None
    only_if: Callable[[dict], bool] | None = None
    testing: Any = SAME
    production: Any = SAME
    stored_as: str | None = None  # the app.config key, when it cannot be the name

    @property
    def key(self) -> str:
        return self.stored_as or self.name

    def default_in(self, environment: str):
        default = getattr(self, environment, SAME)
        return self.default if default is SAME else default

    def read(self, environ, environment: str):
        raw = environ.get(self.name)
        value = None if raw is None else self._parse(raw)
        default = self.default_in(environment)
        if value is not None or default is None or default is REQUIRED:
            return value
        return default.make() if isinstance(default, Generated) else self._parse(default)

    def _parse(self, raw: str):
        try:
            return self.parse(raw)
        except ValueError as error:
            raise ConfigError(f"{self.name} {error}") from None

    def refusal(self, value, environment: str, settings: dict) -> str | None:
        if self.only_if and not self.only_if(settings):
            return None
        if value is None and self.default_in(environment) is REQUIRED:
            return f"{self.name} is required in {environment}"
        if value is not None and self.bounds:
            low, high = self.bounds
            if value < low or (high is not None and value > high):
                return f"{self.name} must be {self.allowed()}"
        if value is not None and self.choices and value not in self.choices:
            return f"{self.name} must be {self.allowed()}, got {value!r}"
        return self.check(self.name, value, settings) if self.check else None

    def allowed(self) -> str:
        """The bounds or choices in words, as refusals and the page say them."""
        if self.choices:
            if len(self.choices) == 2:
                return " or ".join(self.choices)
            return "one of " + ", ".join(self.choices)
        low, high = self.bounds
        if high is not None:
            return f"between {low} and {high}"
        return "positive" if low == 1 else f"{low} or more"
