"""Model cards: README metadata read as bounded plain data, and Markdown rendered once per content."""

from weightyard.cards.metadata import (
    FRONT_MATTER_LIMIT,
    MAX_DEPTH,
    CardFacts,
    card_facts,
    load_metadata,
    split_front_matter,
    strings,
)
from weightyard.cards.render import BRACKET_LIMIT, RENDER_LIMIT, render_card, render_markdown
from weightyard.cards.service import CARD_LIMIT, CARD_PATH, CardService, StoredCard, build_card
from weightyard.cards.validation import EMPTY_METADATA, CardCheck, check_card

__all__ = [
    "BRACKET_LIMIT",
    "CARD_LIMIT",
    "CARD_PATH",
    "EMPTY_METADATA",
    "FRONT_MATTER_LIMIT",
    "MAX_DEPTH",
    "RENDER_LIMIT",
    "CardCheck",
    "CardFacts",
    "CardService",
    "StoredCard",
    "build_card",
    "card_facts",
    "check_card",
    "load_metadata",
    "render_card",
    "render_markdown",
    "split_front_matter",
    "strings",
]
