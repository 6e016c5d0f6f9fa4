"""Recipes: the pydantic schema, YAML loading with `a.b=v` overrides, and the resolved dump."""

from avcli.recipe.load import load_recipe, recipe_from_dict, recipe_to_yaml, save_recipe
from avcli.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "recipe_from_dict", "recipe_to_yaml", "save_recipe"]
