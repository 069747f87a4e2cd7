"""A user's own policy, as the README shows it: any class with ``act(obs)`` will do."""


class MyPolicy:
    """Balance CartPole: push towards the side the pole is falling to."""

    def __init__(self, observation_space, action_space, gain: float = 0.5):
        self.gain = gain

    def act(self, obs):
        _x, _x_dot, theta, theta_dot = obs
        return int(theta + self.gain * theta_dot > 0)


class MyBatchPolicy(MyPolicy):
    """The same, acting on a vector env's whole batch at once (``env.num_envs`` > 1)."""

    def act_batch(self, obs_batch):
        return (obs_batch[:, 2] + self.gain * obs_batch[:, 3] > 0).astype(int)
