"""Conversation flows: pure functions from (state, message, context) to an Outcome."""
