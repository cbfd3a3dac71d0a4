"""Conversations: a customer's conversation with the assistant and the tenant's humans.

Owns: the conversation streams, the conversation list and message read models.
Publishes: `conversations.conversation_opened`, `conversations.message_posted` (with the text),
`conversations.conversation_assigned`, `..._handed_off`, `..._returned_to_assistant`,
`..._resolved`, `..._closed`, `..._reopened`.
Consumes: nothing yet (the orchestrator and channels will post through its commands).
"""
