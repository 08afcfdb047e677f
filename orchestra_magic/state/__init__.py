"""Run state: the events the engine emits and the one reducer that turns them into state."""
