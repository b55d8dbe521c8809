"""Protocols: how structured task items become a backbone's text and its text becomes answers.

``PROTOCOLS`` maps a name to the protocol object (stateless; rendering takes the tokenizer).
``grammar`` is the builtin bases' word language; ``chat`` is natural language through a chat
template. See ``tasks/protocols/base.py`` for the contract.
"""

from tasks.protocols.base import FORMAT_SUBJECT, FORMATS, USER_SUBJECT, ParsedAnswer, Protocol, Statement
from tasks.protocols.chat import ChatProtocol
from tasks.protocols.grammar import GrammarProtocol
from tasks.registry import Registry

PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.add("grammar", GrammarProtocol())
PROTOCOLS.add("chat", ChatProtocol())

__all__ = [
    "FORMATS",
    "FORMAT_SUBJECT",
    "PROTOCOLS",
    "USER_SUBJECT",
    "ChatProtocol",
    "GrammarProtocol",
    "ParsedAnswer",
    "Protocol",
    "Statement",
]
