"""Headscope: see what every attention head of a transformer looks at and what it does.

One package, folders by job (read downwards: each uses only those below it):
  cli/, notebook/   the `headscope` command; show() and analyze() in Jupyter
  server/           the web app: settings, the answer builder, the model thread, routes, page
  corpus/           per-head statistics over many texts, locally or on Ray
  analyses/         pure functions of an Analysis or a model: metrics, roles, importance, probes, ...
  models/           text -> Analysis: the contract, our textbook attention, the nets, the adapters
  data/             weights of the models trained here, the calendar, varied texts, probe sets
  training/         the training scripts and studies (imported by nothing that serves)
"""

__version__ = "3.0.0"
