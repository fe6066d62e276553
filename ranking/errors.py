class SearchQueryError(ValueError):
    """The query cannot be run as given (empty, too long, bad parameters); the message says why
    in words a caller can show to a user."""
