"""An example of a user's own package, used as ``policy._target_=mypackage.agents.MyPolicy``."""
