"""docs/configuration.md, made from the settings table:
``python -m config.page > docs/configuration.md``. tests/test_config.py fails
when the committed page differs from what this makes."""

import sys

from . import CONFIGS
from .setting import REQUIRED, Generated
from .table import GUNICORN_SETTINGS, SECTIONS

HEAD = """\
# Configuration

<!-- Made from the table in config/table.py by `python -m config.page >
docs/configuration.md`; edit the table, not this page. -->

Every setting is an environment variable, read once in the `config` package when
the app is created. `AUTHAPI_ENV` picks the environment: {environments}
(`development` when unset). A default marked **required** means there is none:
that environment refuses to start without the setting, with one line naming it,
and so it does for a value outside the bounds or choices given in brackets. The
last section lists what `gunicorn.conf.py` reads.
"""


def shown(default) -> str:
    if default is REQUIRED:
        return "**required**"
    if isinstance(default, Generated):
        return default.label
    if default is None:
        return "unset"
    return f"`{default}`" if default else "empty"


def markdown() -> str:
    environments = list(CONFIGS)
    lines = [HEAD.format(environments=", ".join(f"`{name}`" for name in environments))]
    for title, settings in (*SECTIONS, ("Read by gunicorn.conf.py", GUNICORN_SETTINGS)):
        lines += [
            f"## {title}",
            "",
            f"| variable | {' | '.join(environments)} | meaning |",
            "|---" * (len(environments) + 2) + "|",
        ]
        for setting in settings:
            defaults = " | ".join(shown(setting.default_in(name)) for name in environments)
            allowed = f" ({setting.allowed()})" if setting.bounds or setting.choices else ""
            lines.append(f"| `{setting.name}` | {defaults} | {setting.doc}{allowed} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
