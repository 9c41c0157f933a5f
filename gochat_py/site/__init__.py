"""The site layer: serves the browser chat page from the top-level ``site/`` folder."""
