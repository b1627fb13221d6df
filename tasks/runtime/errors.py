"""The error every layer raises for a failure the user can act on; imports nothing of tunerflow, so the
storage layer can raise it as well as the steps."""


class StepError(RuntimeError):
    """A failure whose message is meant for the user as it is (no traceback needed)."""
