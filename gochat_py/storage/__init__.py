"""Connections to the shared stores (Redis), made on demand, never at import."""
