"""After a command: group commit, the hub and its broker interface, membership cache, read markers,
notifications.
"""
