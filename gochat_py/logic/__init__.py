"""The logic layer: a gRPC server over users (SQL), sessions and rooms (Redis) and the queue."""
