"""What every bad-input test of the command line asserts."""


def assert_bad_input(result, *fragments: str) -> str:
    """Exit status 2, one paragraph on stderr starting 'error:', no traceback, nothing on stdout."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("error: ")
    assert "\n" not in message
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in message, message
    return message
