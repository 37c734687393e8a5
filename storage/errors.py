"""Errors that carry no sentence: the id of their text in bot/content and the values it is filled with.

The storage and figures modules raise them; the command line (operator.yaml) or the dashboard
(dashboard.yaml, web.yaml) turns them into Vietnamese at the edge, so every sentence lives in content.
"""

from __future__ import annotations

from typing import Any


class CodedError(ValueError):
    """`code` is the id of the sentence in its content file; `params` fill its placeholders."""

    def __init__(self, code: str, /, **params: Any):
        super().__init__(code, params)
        self.code = code
        self.params = params

    def __str__(self) -> str:  # for logs and tracebacks only: what a person reads is rendered from content
        return f"{self.code} {self.params}" if self.params else self.code
