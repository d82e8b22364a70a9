"""Endpoint templates and value classification (pure, in memory)."""

from __future__ import annotations

import itertools
import random

from twisted.trial.unittest import SynchronousTestCase

from postcap.apispec.templates import (
    PARAM,
    PathLearner,
    matches,
    parameter_names,
    parse_template,
    render,
    split_path,
)
from postcap.apispec.values import id_like, secret_name, secret_value, string_format, typed_text


def learn(paths: list[str], threshold: int = 20, host: str = "h") -> dict[str, str]:
    learner = PathLearner(threshold)
    for path in paths:
        learner.add(host, split_path(path))
    return {path: render(learner.template(host, split_path(path))) for path in paths}


class ValueTests(SynchronousTestCase):
    def test_id_like_segments(self) -> None:
        for segment in ("42", "0", "123e4567-e89b-12d3-a456-426614174000", "9f8e7d6c5b4a3928",
                        "deadbeef01", "item-42", "my_post_2024", "a8f3kz92mq", "2026-01-02", "ann@example.org"):
            self.assertTrue(id_like(segment), segment)
        for segment in ("users", "v1", "v2.1", "api", "me", "oauth2", "", "line-items", "deadbeef"):
            self.assertFalse(id_like(segment), segment)

    def test_string_formats(self) -> None:
        self.assertEqual(string_format("2026-01-02T03:04:05Z"), "date-time")
        self.assertEqual(string_format("2026-01-02T03:04:05.123+02:00"), "date-time")
        self.assertEqual(string_format("2026-01-02"), "date")
        self.assertEqual(string_format("123e4567-e89b-12d3-a456-426614174000"), "uuid")
        self.assertEqual(string_format("a.b@example.org"), "email")
        self.assertEqual(string_format("https://example.org/x?y=1"), "uri")
        self.assertIsNone(string_format("hello"))

    def test_typed_text(self) -> None:
        self.assertEqual([typed_text(v) for v in ("42", "-1", "1.5", "true", "false", "x", "1e5")],
                         [42, -1, 1.5, True, False, "x", "1e5"])

    def test_secrets_by_name_and_shape(self) -> None:
        for name in ("password", "new_password", "access_token", "X-API-Key", "client_secret", "sessionid",
                     "Authorization"):
            self.assertTrue(secret_name(name), name)
        for name in ("author", "name", "email", "id"):
            self.assertFalse(secret_name(name), name)
        for value in ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig", "Bearer abcdefghijklmnop",
                      "sk_live_abcdefghijklmnop", "a8F3kz92mqP0x7Lw5tY1uV3bN6cR9dE2"):
            self.assertTrue(secret_value(value), value)
        for value in ("123e4567-e89b-12d3-a456-426614174000", "hello world", "https://example.org/a/b/c/d",
                      "12345678901234567890"):
            self.assertFalse(secret_value(value), value)


class TemplateTests(SynchronousTestCase):
    def test_ids_become_named_parameters_and_constants_stay(self) -> None:
        learnt = learn(["/users/1", "/users/2/orders/9f8e7d6c5b4a3928/items/7", "/users",
                        "/v1/orders/123e4567-e89b-12d3-a456-426614174000", "/users/me"])
        self.assertEqual(learnt, {
            "/users/1": "/users/{userId}",
            "/users/2/orders/9f8e7d6c5b4a3928/items/7": "/users/{userId}/orders/{orderId}/items/{itemId}",
            "/users": "/users",
            "/v1/orders/123e4567-e89b-12d3-a456-426614174000": "/v1/orders/{orderId}",
            "/users/me": "/users/me",
        })

    def test_a_position_varying_beyond_the_threshold_becomes_a_parameter(self) -> None:
        names = [f"/people/{n}/profile" for n in ("ann", "bea", "cid", "dov", "eve")]
        self.assertEqual(set(learn(names, threshold=4).values()), {"/people/{personId}/profile"})
        self.assertEqual(set(learn(names[:4], threshold=4).values()), set(names[:4]))

    def test_the_result_does_not_depend_on_the_order(self) -> None:
        paths = [f"/tags/{w}" for w in ("red", "green", "blue", "cyan")] + ["/tags/red/posts/3", "/tags"]
        expected = learn(paths, threshold=3)
        shuffler = random.Random(7)
        for _ in range(20):
            shuffled = paths[:]
            shuffler.shuffle(shuffled)
            self.assertEqual(learn(shuffled, threshold=3), expected)
        self.assertEqual(expected["/tags/red/posts/3"], "/tags/{tagId}/posts/{postId}")

    def test_hosts_learn_apart(self) -> None:
        learner = PathLearner(2)
        for word in ("a", "b", "c"):
            learner.add("one", split_path(f"/x/{word}"))
        learner.add("two", split_path("/x/a"))
        self.assertEqual(render(learner.template("one", split_path("/x/a"))), "/x/{xId}")
        self.assertEqual(render(learner.template("two", split_path("/x/a"))), "/x/a")

    def test_memory_is_bounded_by_endpoints_not_requests(self) -> None:
        learner = PathLearner(5)
        for n in range(10_000):
            learner.add("h", split_path(f"/files/name{'abcdefgh'[n % 8]}{n}x/meta"))
        root = learner._roots["h"]
        files = root.literals["files"]
        self.assertTrue(files.variable)
        self.assertEqual(files.literals, {})
        self.assertEqual(list(files.param.literals), ["meta"])

    def test_names(self) -> None:
        self.assertEqual(parameter_names(parse_template("/users/{a}/line-items/{b}/{c}/{d}")),
                         ["userId", "lineItemId", "id", "id2"])
        self.assertEqual(parameter_names(parse_template("/categories/{a}/addresses/{b}/boxes/{c}")),
                         ["categoryId", "addressId", "boxId"])
        self.assertEqual(parameter_names(parse_template("/statuses/{a}/people/{b}")), ["statusId", "personId"])
        self.assertEqual(render(parse_template("/users/:x"), style="postman"), "/users/:userId")
        self.assertTrue(matches(parse_template("/users/{id}"), split_path("/users/9")))
        self.assertFalse(matches(parse_template("/users/{id}"), split_path("/users/9/x")))
        self.assertEqual(split_path("/"), ())
        self.assertEqual(split_path("/a/"), ("a", ""))
        self.assertEqual(parse_template("/a/{b}"), ("a", PARAM))

    def test_every_order_of_nested_ids_agrees(self) -> None:
        paths = ["/orders/1/items/2", "/orders/3/items/4", "/orders/5"]
        results = {tuple(sorted(learn(list(order)).items())) for order in itertools.permutations(paths)}
        self.assertEqual(len(results), 1)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SEGMENTS = st.sampled_from(["users", "orders", "items", "me", "a", "b", "c", "d", "e", "7", "42",
                             "123e4567-e89b-12d3-a456-426614174000", "v1"])
_PATHS = st.lists(st.lists(_SEGMENTS, min_size=0, max_size=4).map(lambda s: "/" + "/".join(s)),
                  min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(_PATHS, st.randoms(use_true_random=False), st.integers(min_value=1, max_value=4))
def test_templates_do_not_depend_on_the_order(paths: list[str], shuffler: random.Random, threshold: int) -> None:
    expected = learn(paths, threshold)
    shuffled = paths[:]
    shuffler.shuffle(shuffled)
    assert learn(shuffled, threshold) == expected
    for path, template in expected.items():
        assert matches(parse_template(template), split_path(path))
