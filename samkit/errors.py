"""The one exception type samkit raises for bad user input."""


class InputError(ValueError):
    """Raised for every bad input: the message says what was wrong and what is expected."""
