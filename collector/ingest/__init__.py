"""The public report endpoint: what browsers and probes send to."""
