"""The Anthropic provider: the official SDK, its error mapping, the Message Batches API and the tool loop."""
