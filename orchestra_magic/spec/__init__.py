"""The spec: its model and checks, reading YAML with line numbers, Jinja expansion and for_each, prompt templates."""
