"""Recipes that ship with ml4ms; ``--config NAME`` finds ``NAME.toml`` here.

Property recipes (``ml4ms fit``, ``cv``, ``learning-curve``): ``nomad2018``, ``nomad2018_demo``, ``qm7``,
``qm7_delta``, and the graph models ``qm7_mpnn`` and ``nomad2018_mpnn``; SISSO configs (``ml4ms sisso``):
``octet_*``; potential recipes (``ml4ms potential fit``): ``tio2_*``. The repository's ``configs/`` folder is a
link to this one.
"""
