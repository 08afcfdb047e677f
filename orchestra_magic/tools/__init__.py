"""Tools agents may call: resolving names to Python functions and server tools, and the built-in file tools."""
