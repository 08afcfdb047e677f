"""Views of a run's state: the rich CLI progress and the ipywidgets tree (only these import rich / ipywidgets)."""
