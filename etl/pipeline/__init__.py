"""Pipeline: planning windows, running them with retries, and reporting."""
