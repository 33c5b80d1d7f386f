"""Attacks 2 and 3 on the voting path (issue 16, "Trustworthy votes"): linking an image's
URLs across battles, and telling gold checks from normal battles before the vote. Each is
reproduced against the real app on a free port over real HTTP, as a bot would run it, and
asserted to fail.

Clients are raw HTTP (``tests/attack_kit.Api``: the public API ``/rater``, ``/battle``,
``/vote`` through ``/gradio_api/call/<name>``, and the image URLs), so that every header
and every timing is seen. Servers run with ``trusted_proxies="127.0.0.1"`` and clients
send ``X-Forwarded-For: 10.0.x.y`` to act as different addresses (only ever to
127.0.0.1). Ground truth (which image is on which side, which battle is a gold check) is
read from the database afterwards by battle token. No mocks.

The other attacks of the suite: 1 (the side-channel scan, first-fetch timings) in
tests/test_attacks_side_channels.py; 4 (minting ids), 5 (rate limits under forged
addresses) and 6 (a fingerprinting bot) in tests/test_attacks_identities.py.

attack -> test                                         covered elsewhere (not repeated)
-----------------------------------------------------  -------------------------------------
2. link one image's URLs across battles; reuse a URL   test_tampering.py: expired, forged
   from another address or after the battle's TTL;     and cross-rater *vote* tokens
   tell the failures apart
   -> test_image_urls_are_unlinkable_bound_and_short_lived
3. tell gold checks from normal battles before the     test_gold_battles.py: the gold rate,
   vote; ETag / Last-Modified anywhere                 answers, copies (domain level)
   -> test_gold_battles_look_like_normal_battles

What the pixels themselves tell is not asserted: gold copies are degraded on purpose, and
their body sizes differ (printed for the record).

Run time: about 15 s on two cores.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter

import httpx

from arena.config import load_settings
from arena.storage.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import MODEL_NAMES, build_fixture
from tests.attack_kit import (
    DISPLAY,
    PROXY,
    VOTE_TAB,
    Api,
    Observed,
    assert_no_leak,
    battle_truth,
    headers_of,
    report,
    scan,
)


# -- helpers ------------------------------------------------------------------------------------
def longest_common_substring(a: str, b: str) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


# -- 2. unlinkable, bound, short-lived URLs --------------------------------------------------------
def test_image_urls_are_unlinkable_bound_and_short_lived(tmp_path):
    settings = load_settings(
        env={}, workspace=str(tmp_path / "ws"), battle_ttl_seconds=2, trusted_proxies=PROXY
    )
    store = Store(settings)
    # two models, one prompt, one image each: every battle shows the same two images
    build_fixture(store, model_names=MODEL_NAMES[:2], n_prompts=1, seeds=1, with_reference=False)
    with (
        running_app(store, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        alice, bob, carol = (Api(http, f"10.0.2.{k}") for k in (1, 2, 3))
        nobody = Api(http, None)  # 127.0.0.1 itself
        served = {}
        for api in (alice, bob):
            rater = api.rater()
            served[api.address] = api.battle(rater)
        t_served = time.monotonic()
        truth = battle_truth(store, [b["token"] for b in served.values()])
        by_image: dict[int, list[tuple[str, str]]] = {}
        for address, battle in served.items():
            t = truth[battle["token"]]
            for side in ("left", "right"):
                by_image.setdefault(t[side]["image"], []).append((address, battle[f"{side}_image"]))
        assert len(by_image) == 2 and all(len(v) == 2 for v in by_image.values())

        urls = [u for v in by_image.values() for _, u in v]
        assert len(set(urls)) == 4, urls
        prefixes = {u.rsplit("/", 1)[0] for u in urls}
        assert prefixes == {"img"}, prefixes
        handles = [u.rsplit("/", 1)[1] for u in urls]
        for a, b in itertools.combinations(handles, 2):
            assert longest_common_substring(a, b) < 8, (a, b)

        ok, failures = {}, []
        api_of = {alice.address: alice, bob.address: bob}
        for image, seen in by_image.items():
            for address, u in seen:
                response, _ = api_of[address].get(u)
                assert response.status_code == 200, (u, response.status_code)
                ok[(image, address)] = response.content
            # the same image in two battles: unrelated URLs, identical bytes
            assert ok[(image, alice.address)] == ok[(image, bob.address)]
            for address, u in seen:
                other = bob if address == alice.address else alice
                for stranger in (other, carol, nobody):
                    failures.append(("other address", stranger.get(u)[0]))
        sha = truth[served[alice.address]["token"]]["left"]["sha"]
        some = served[alice.address]["left_image"]
        forged = [
            f"img/{sha}.png",  # the URL of the image before the defences
            f"img/{sha}",
            f"img/{secrets.token_urlsafe(18)}",  # a well-formed handle nobody was given
            some[:-1] + ("A" if some[-1] != "A" else "B"),
            some + "x",
            "img/" + "." * 24,
        ]
        for u in forged:
            failures.append(("forged", alice.get(u)[0]))
        time.sleep(max(0.0, t_served + settings.battle_ttl_seconds + 0.6 - time.monotonic()))
        for seen in by_image.values():
            for address, u in seen:
                failures.append(("expired", api_of[address].get(u)[0]))
    store.close()

    first = failures[0][1]
    for why, response in failures:
        assert response.status_code == 404, (why, response.url, response.status_code)
        assert response.content == first.content, (why, response.content)
        assert headers_of(response) == headers_of(first), (why, headers_of(response))
    assert Counter(why for why, _ in failures) == {
        "other address": 4 * 3,
        "forged": len(forged),
        "expired": 4,
    }


# -- 3. gold checks ---------------------------------------------------------------------------
def test_gold_battles_look_like_normal_battles(tmp_path):
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        gold_rate=0.5,
        display_size=DISPLAY,
        trusted_proxies=PROXY,
    )
    store = Store(settings)
    build_fixture(store, n_prompts=6, seeds=2, size=192)
    observed = Observed()
    with (
        running_app(store, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for r in range(4):
            api = Api(http, f"10.0.3.{r + 1}")
            rater = api.rater()
            api.battle(rater)  # warm-up
            for _ in range(25):
                observed.serve(api, rater)
        missing = Api(http, "10.0.3.1").get(f"img/{secrets.token_urlsafe(18)}")[0]
    truth = battle_truth(store, [b["token"] for b in observed.battles])
    store.close()
    kinds = [truth[b["token"]]["kind"] for b in observed.battles]
    image_kinds = [truth[i["token"]]["kind"] for i in observed.images]
    assert 20 <= kinds.count("gold") <= 80, Counter(kinds)

    groups = [
        (truth[i["token"]][i["side"]]["sha"], truth[i["token"]]["kind"]) for i in observed.images
    ]
    categorical, numeric = observed.image_features()
    body = numeric.pop("body size")  # the pixels: a degraded copy is meant to look degraded
    per_image = scan(categorical, numeric, image_kinds, groups)
    cat_b, num_b = observed.battle_features()
    per_battle = scan(cat_b, num_b, kinds)
    assert_no_leak("served images -> gold or normal", per_image)
    assert_no_leak("/battle responses -> gold or normal", per_battle)
    # Not asserted, for the record: the body size follows the pixels (noise compresses badly).
    print(
        report(
            "body size (the pixels), for the record", scan({}, {"body": body}, image_kinds, groups)
        )
    )

    everything = [h for b in observed.battles for h in (*b["join_headers"], *b["stream_headers"])]
    everything += [h for i in observed.images for h in i["all_headers"]]
    everything += list(headers_of(missing))
    names = {name for name, _ in everything}
    assert not names & {"etag", "last-modified"}, names
    assert ("cache-control", "private, max-age=3600, immutable") in everything
