"""The connect layer: holds client sockets (websocket, TCP) and writes frames to them."""
