"""Recipes that ship with ml4ms; ``--config NAME`` finds ``NAME.toml`` here."""
