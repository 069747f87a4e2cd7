"""A user's own policy, as the README shows it: any class with ``act(obs)`` will do."""


class MyPolicy:
    """Balance CartPole: push towards the side the pole is falling to."""

    def __init__(self, observation_space, action_space, gain: float = 0.5):
        self.gain = gain

    def act(self, obs):
        _x, _x_dot, theta, theta_dot = obs
        return int(theta + self.gain * theta_dot > 0)
