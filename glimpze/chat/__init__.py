"""The visitor chat: sessions, messages, notes and handoffs, leads, agents, chat tokens, and CTA cards
with signed context.
"""
