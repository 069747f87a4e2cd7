"""rlrec's Hydra plugins: the sweeper every rlrec sweep uses, and launchers for Ray and SLURM.

Hydra takes plugin classes only from the ``hydra_plugins`` namespace package. It finds them by
importing every module here when it starts (these import nothing heavy, such as Ray or submitit,
until a sweep uses them); ``rlrec.hydra_callbacks.register_plugins`` also registers them by name,
for an editable install, whose import hook Hydra's scan does not see. Their configs are in
``conf/hydra/``, the run's own config folder.
"""
