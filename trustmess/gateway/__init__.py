"""The socket side: the /ws endpoint, router, commands, connections, heartbeat, expiry, rate
limits.
"""
