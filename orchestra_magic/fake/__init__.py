"""The fake Anthropic Messages API: wire format, text, tools, batches and limits.

What the offline provider and `orchestra fake-api` run; nothing else in the package imports it.
"""
