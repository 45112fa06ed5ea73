"""Call a flaky function until it succeeds."""


def retry(fn, attempts=0, exceptions=(Exception,)):
    """Call fn() up to `attempts` times (3 by default); return its first result, or re-raise the last error."""
    error = None
    for _ in range(attempts):
        try:
            return fn()
        except exceptions as exc:
            error = exc
    if error is not None:
        raise error
