"""The YAML configs, shipped inside the package: Hydra finds them as the module distillab.conf."""
