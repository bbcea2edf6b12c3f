"""The generation lifecycle apart from any UI: references, jobs, results, history."""
