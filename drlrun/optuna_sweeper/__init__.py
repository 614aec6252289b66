"""drlrun's Hydra sweeper plugin, installed as ``hydra_plugins.drlrun_optuna_sweeper`` (Hydra only
loads plugins from the ``hydra_plugins`` namespace; pyproject.toml maps this folder there)."""
