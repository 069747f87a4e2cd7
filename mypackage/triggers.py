"""A user's own trigger, as the README shows it: any class with ``__call__(episode) -> bool``."""


class EveryThird:
    """Film episodes 0, 3, 6, ... (``+trigger.offset=1`` films 1, 4, 7, ...)."""

    reason = "every_third"  # the video_reason column of the episodes it films

    def __init__(self, offset: int = 0):
        self.offset = offset

    def __call__(self, episode):
        return episode % 3 == self.offset


class LongerThan:
    """Film the episodes that last more than ``steps`` steps: known only once each has ended."""

    decides_after = True

    def __init__(self, steps: int = 30):
        self.steps = steps
        self.reason = f"longer_than_{steps}"

    def __call__(self, episode):
        return False  # nothing is known before the episode runs

    def after_episode(self, episode, episode_return):
        return episode_return > self.steps  # CartPole: a step is worth 1
