"""Broadcasts: messages the digital-tech teams push to hamlet groups and subscribers.

model (statuses, audience, per-channel text parts), audience (resolution and dry run), quiet (quiet
hours), pacing (per-channel rate, per-chat spacing, pauses), adapters (one small adapter per platform),
sender (claims due deliveries and sends them), workflow (create, submit, approve, pause, cancel, with
permissions), optout (/dung and /batdau).
"""
