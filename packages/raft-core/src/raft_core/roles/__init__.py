"""Role-specific message handling: ``step_leader``, ``step_candidate`` and ``step_follower``."""
