"""Card metadata and rendering stay within their bounds whatever the README holds."""

from __future__ import annotations

from weightyard.cards import (
    BRACKET_LIMIT,
    FRONT_MATTER_LIMIT,
    MAX_DEPTH,
    RENDER_LIMIT,
    build_card,
    load_metadata,
    render_card,
)
from weightyard.cards.render import place_in_repo


def test_yaml_aliases_are_refused_before_anything_is_expanded() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
    )
    metadata, error = load_metadata(bomb)
    assert metadata == {}
    assert error is not None and "aliases" in error


def test_yaml_nested_deeper_than_the_limit_is_refused() -> None:
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    metadata, error = load_metadata(deep)
    assert metadata == {}
    assert error is not None and "nested deeper" in error
    assert load_metadata("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))[1] is None


def test_oversized_metadata_block_is_not_read() -> None:
    metadata, error = load_metadata("license: mit\n" + "#" * FRONT_MATTER_LIMIT)
    assert metadata == {}
    assert error is not None and "not read" in error


def test_yaml_tags_that_build_objects_are_an_error_not_a_call() -> None:
    metadata, error = load_metadata("license: !!python/object/apply:os.system ['true']")
    assert metadata == {}
    assert error is not None and "not valid YAML" in error


def test_card_dates_are_stored_as_text() -> None:
    stored = build_card(b"---\nlicense: mit\nreleased: 2024-05-01\n---\n# Hi\n")
    assert stored["metadata"] == '{"license": "mit", "released": "2024-05-01"}'
    assert stored["html"] == "<h1>Hi</h1>\n"
    assert stored["plain"] is False


def test_cards_over_the_size_budget_are_kept_as_escaped_text() -> None:
    body = "<b>" + "x" * RENDER_LIMIT
    rendering = render_card(body)
    assert rendering.plain
    assert rendering.html.startswith("<pre>&lt;b&gt;xxx")
    assert rendering.note is not None and "plain text" in rendering.note


def test_cards_with_too_many_brackets_are_kept_as_escaped_text() -> None:
    assert render_card("[" * (BRACKET_LIMIT + 1)).plain
    assert not render_card("[a](b) " * 100).plain


def test_relative_links_of_a_stored_rendering_point_into_whichever_repo_shows_it() -> None:
    stored = build_card(b"[config](config.json) ![img](a.png) [abs](/x)")
    html = stored["html"]
    assert 'href="/-/card-repo/blob/main/config.json"' in html
    placed = place_in_repo(html, "/acme/tiny")
    assert 'href="/acme/tiny/blob/main/config.json"' in placed
    assert 'src="/acme/tiny/resolve/main/a.png"' in placed
    assert 'href="/x"' in placed
