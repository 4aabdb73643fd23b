def check_int(name: str, value, minimum: int, optional: bool = False):
    r"""Raises an error that names the argument :obj:`name` unless
    :obj:`value` is an integer (not a :obj:`bool`) of at least
    :obj:`minimum`, or :obj:`None` if :obj:`optional`."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an integer (got {value!r})")
    if value < minimum:
        raise ValueError(f"'{name}' must be at least {minimum} "
                         f"(got {value})")
