"""The bounded memo both VLP backends tokenise through and the evaluation memoises with."""

import pytest

from iterprime_ros.models.lru import LruCache


def test_oldest_goes_first_and_a_hit_makes_a_key_newest():
    cache: LruCache[str, int] = LruCache(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    assert cache.get_or_make("a", lambda: make("a")) == 1
    assert cache.get_or_make("b", lambda: make("b")) == 2
    assert cache.get_or_make("a", lambda: make("a")) == 1  # hit: "a" is now newest
    cache.get_or_make("c", lambda: make("c"))  # evicts "b", the oldest
    assert "a" in cache and "c" in cache and "b" not in cache
    assert len(cache) == 2
    assert made == ["a", "b", "c"]
    assert (cache.hits, cache.misses) == (1, 3)


def test_a_failing_make_stores_nothing():
    cache: LruCache[str, int] = LruCache(4)

    def boom() -> int:
        raise RuntimeError("tokenizer failed")

    with pytest.raises(RuntimeError):
        cache.get_or_make("x", boom)
    assert "x" not in cache
    assert cache.get_or_make("x", lambda: 7) == 7


def test_clear_and_size_bounds():
    cache: LruCache[int, int] = LruCache(1)
    cache.get_or_make(1, lambda: 1)
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        LruCache(0)
