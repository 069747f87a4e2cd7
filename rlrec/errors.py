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


class FrameError(ConfigError, ValueError):
    """A frame no film can hold: ``render()`` returned None, too few pixels, not an image, or a
    size that changed within the film. A ``ValueError`` where a wrapper meets it; exit 2 on the
    CLI (whose run keeps the episodes that finished before it)."""

    FIX = (
        "make the env render RGB (or grey) arrays of at least 2x2 pixels, of one size per "
        "episode (render_mode='rgb_array'), or film none of its episodes (trigger=never)"
    )

    def __init__(self, source: str, problem: str, fix: str = FIX) -> None:
        super().__init__(source, problem, fix)
