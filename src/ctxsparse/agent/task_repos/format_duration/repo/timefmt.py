"""Human-readable durations."""


def format_duration(seconds: int) -> str:
    """Seconds as HH:MM:SS."""
    if seconds < 0:
        raise ValueError("duration must be >= 0")
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes}:{secs}"
