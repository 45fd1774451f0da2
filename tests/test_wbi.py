"""WBI signing against the published example (DESIGN.md, "WBI signing")."""

from __future__ import annotations

import pytest

from scraper.targets.wbi import WbiKeyError, encode_query, js_quote, keys_from_nav, mixin_key, sign

IMG = "7cd084941338484aae1ad9425b84077c"
SUB = "4932caff0ff746eab6f01bf08b70ac45"


def test_published_mixin_key() -> None:
    assert mixin_key(IMG, SUB) == "ea1db124af3c7062474693fa704f4ff8"


def test_published_signature() -> None:
    signed = sign({"foo": "114", "bar": "514", "zab": 1919810}, IMG, SUB, wts=1702204169)
    assert list(signed) == ["bar", "foo", "wts", "zab", "w_rid"]
    assert encode_query({k: v for k, v in signed.items() if k != "w_rid"}) == (
        "bar=514&foo=114&wts=1702204169&zab=1919810"
    )
    assert signed["w_rid"] == "8f6f2b5b3d485fe1886cec6a0be8c5d4"


def test_values_are_filtered_and_quoted_like_encode_uri_component() -> None:
    signed = sign({"pagination_str": '{"offset":""}', "q": "a b!'()*c~"}, IMG, SUB, wts=1)
    assert signed["q"] == "a bc~"  # !'()* dropped from the value that is sent, too
    assert js_quote('{"offset":""}') == "%7B%22offset%22%3A%22%22%7D"
    assert js_quote("a b/é") == "a%20b%2F%C3%A9"


def test_keys_from_nav_logged_out() -> None:
    payload = {
        "code": -101,
        "message": "账号未登录",
        "data": {
            "isLogin": False,
            "wbi_img": {
                "img_url": f"https://i0.hdslb.com/bfs/wbi/{IMG}.png",
                "sub_url": f"https://i0.hdslb.com/bfs/wbi/{SUB}.png",
            },
        },
    }
    assert keys_from_nav(payload) == (IMG, SUB)


@pytest.mark.parametrize("payload", [{}, {"data": None}, {"data": {"wbi_img": {"img_url": "", "sub_url": "x"}}}])
def test_keys_from_nav_rejects_missing_keys(payload: dict[str, object]) -> None:
    with pytest.raises(WbiKeyError):
        keys_from_nav(payload)


def test_quoting_shortcut_matches_quote_for_every_character() -> None:
    # js_quote skips quote() for values it would leave as they are: the answer
    # must be quote()'s for every ASCII character and a few others, alone and mixed.
    from urllib.parse import quote  # noqa: PLC0415

    samples = [chr(c) for c in range(128)] + ["é", "中文", "\u2028", "a-b_c.d~e", "1702204169", "", "x y", "%41"]
    samples += [a + b for a in samples[:128:7] for b in samples[::11]]
    for value in samples:
        assert js_quote(value) == quote(value, safe="!*'()"), repr(value)
        assert js_quote(value) == quote(value, safe="!*'()"), repr(value)  # the cached answer too
