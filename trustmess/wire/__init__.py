"""The codec: client frames to typed commands, server events to bytes, validation, WebSocket
framing. No I/O.
"""
