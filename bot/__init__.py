"""cccd-bot: a chatbot that guides residents through the online ID card application."""
