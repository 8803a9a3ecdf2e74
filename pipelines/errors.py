"""The one exception type for problems a user can fix."""


class KinetographError(Exception):
    """A problem the user caused and can fix; the message says what to change.

    Front doors (CLI, Gradio, ComfyUI) show the message alone, never a traceback.
    """


class JobCancelled(KinetographError):
    """The user cancelled the job; nothing partial was left behind."""
