"""The web side of the bot: the public web chat and what officers open in a browser."""
