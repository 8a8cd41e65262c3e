"""User mistakes (the CLI prints the message on one line and exits 2) and cancelled runs."""


class UserError(Exception):
    """A bad input or setting. The message names the value and the fix."""


class Cancelled(Exception):
    """A run stopped by its cancel check. Nothing is left under the final output names; finished stages and
    segments stay in the work directory, so the same call resumes from them."""
