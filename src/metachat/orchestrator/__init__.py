"""Orchestrator: the assistant's reply to each customer message, or its hand-off to a human.

Owns: the reply pipeline (context, retrieval, prompt, LLM call, tool calls, confidence,
decision) and the confidence analyzer (`confidence`).
Publishes: nothing of its own yet; its effects are conversation commands.
Consumes: `conversations.message_posted` (customer messages).
"""
