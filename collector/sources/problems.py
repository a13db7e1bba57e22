"""Config problems found inside a pydantic validator, raised all at once, each at its own field.

A validator of a source or tag model collects `(field, message, value)` entries and calls
`raise_problems`; `collector check` then names each one by its full path
(`machines[0].sources[1].tags[3].bit`) and line, instead of one message about the whole entry.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

# (field name, or a path below the model such as ("tags", 2, "length"); message; value given)
Problems = list[tuple[str | tuple[Any, ...], str, Any]]


def raise_problems(problems: Problems, model: str = "config") -> None:
    """Raise every problem at once as one ValidationError; return when there are none."""
    if problems:
        raise ValidationError.from_exception_data(
            model,
            [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "{error}", {"error": message}),
                    loc=field if isinstance(field, tuple) else (field,),
                    input=value,
                )
                for field, message, value in problems
            ],
        )
