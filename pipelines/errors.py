"""The one exception type for problems a user can fix."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


class KinetographError(Exception):
    """A problem the user caused and can fix; the message says what to change.

    Front doors (CLI, Gradio, ComfyUI) show the message alone, never a traceback.

    ``fields``: the job settings the message is about, in the engine's names (``budget_gb``,
    ``fps``). The message names each of them as ``{name}``; ``str(error)`` reads them as the
    engine's names, and ``worded(names)`` in a front door's words (``--budget-gb`` on the CLI,
    ``target_fps`` in the ComfyUI node), so one check serves every front door.
    """

    def __init__(self, message: str = "", *, fields: Sequence[str] = ()) -> None:
        self.template = str(message)
        self.fields = tuple(fields)
        super().__init__(self.worded())

    @property
    def field(self) -> str | None:
        """The setting at fault (the first named), or None when the message names none."""
        return self.fields[0] if self.fields else None

    def worded(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each field named as ``names`` says (missing: the engine's name)."""
        text = self.template
        for name in self.fields:
            text = text.replace("{" + name + "}", (names or {}).get(name, name))
        return text

    def renamed(self, names: Mapping[str, str]) -> KinetographError:
        """The same error with fields renamed (a lower layer's parameter -> the job's field)."""
        template = self.template
        for old, new in names.items():
            template = template.replace("{" + old + "}", "{" + new + "}")
        return type(self)(template, fields=tuple(names.get(f, f) for f in self.fields))

    def __reduce__(self):  # pickles (a worker process) with its fields
        return _rebuild, (type(self), self.template, self.fields)


def _rebuild(cls, template: str, fields: tuple[str, ...]):
    try:
        return cls(template, fields=fields)
    except TypeError:
        return cls(KinetographError(template, fields=fields).worded())


def field_error(field: str, message: str, *more: str) -> KinetographError:
    """A KinetographError about ``field`` (and ``more``), named ``{field}`` in ``message``."""
    return KinetographError(message, fields=(field, *more))


class JobCancelled(KinetographError):
    """The user cancelled the job; nothing partial was left behind."""
