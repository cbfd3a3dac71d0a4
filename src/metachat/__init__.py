"""MetaChat: a multi-tenant conversational-AI platform on an event-sourced backbone."""

__version__ = "0.1.0"
