"""The read API: JSON for scripts and the dashboard, per site, behind a bearer token."""
