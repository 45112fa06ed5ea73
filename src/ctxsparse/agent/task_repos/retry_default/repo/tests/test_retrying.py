from retrying import retry


def test_explicit_attempts():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise OSError("boom")
        return "ok"

    assert retry(flaky, attempts=2) == "ok"
