"""User mistakes: a config key, what is wrong with it, and how to fix it."""

from __future__ import annotations


class ConfigError(Exception):
    """A mistake in the user's config; the CLI prints it without a traceback and exits with 2."""

    exit_code = 2

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # rebuilt from its three parts when it crosses a process boundary
        return type(self), (self.key, self.problem, self.fix)
