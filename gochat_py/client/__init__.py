"""Small clients for people and scripts (not a layer: they speak only the public protocols)."""
