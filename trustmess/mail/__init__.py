"""Outgoing mail: what the server's mails say, the queue that sends them, and the transports."""
