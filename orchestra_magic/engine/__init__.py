"""The async engine: planning the agents, scheduling them, pacing (throttle) and where they run (executors)."""
