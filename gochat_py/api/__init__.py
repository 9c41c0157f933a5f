"""The api layer: the REST API browsers and scripts call, relayed to logic over gRPC."""
