"""Channels: thin transports between a platform and the conversation core."""
