"""``normalize_prompts``: the one prompt normalisation every head uses."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.errors import InputError
from samkit.prompts import Box, Mask, Points, SupportSet, Text, check_obj_id, normalize_prompts

VISUAL = (Points, Box, Mask)
POINT = Points([[1, 2]])
BOX = Box([0, 0, 3, 3])


def test_prompt_is_object_one_and_lists_are_kept():
    assert normalize_prompts(POINT, None, VISUAL, head="h") == {1: [POINT]}
    assert normalize_prompts([POINT, BOX], None, VISUAL, head="h") == {1: [POINT, BOX]}
    assert normalize_prompts((BOX,), None, VISUAL, head="h") == {1: [BOX]}


def test_prompts_keep_their_order_and_become_lists():
    normalized = normalize_prompts(None, {7: BOX, np.int64(2): [POINT, BOX]}, VISUAL, head="h")
    assert list(normalized) == [7, 2] and normalized == {7: [BOX], 2: [POINT, BOX]}
    assert all(type(obj_id) is int for obj_id in normalized)


def test_nothing_given_is_an_empty_dict():
    assert normalize_prompts(None, None, VISUAL, head="h") == {}


@pytest.mark.parametrize("prompt, prompts, message", [
    (POINT, {1: POINT}, "h: give either prompt= .* not both"),
    ({1: POINT}, None, "a dict of per-object prompts goes in prompts="),
    (None, [POINT], "prompts must be a dict"),
    (None, {}, "prompts is an empty dict"),
    (None, {0: POINT}, "object ids must be positive ints"),
    (None, {True: POINT}, "object ids must be positive ints"),
    (None, {"1": POINT}, "object ids must be positive ints"),
    (None, {1: []}, "object 1 has an empty prompt"),
    (None, {2: None}, "object 2 has an empty prompt"),
    (Text("a dog"), None, "h: object 1: prompts must be Points, Box, Mask, got Text"),
    (None, {3: [POINT, "click"]}, "object 3: prompts must be Points, Box, Mask, got str"),
])
def test_bad_prompts_are_input_errors_naming_the_head(prompt, prompts, message):
    with pytest.raises(InputError, match=message):
        normalize_prompts(prompt, prompts, VISUAL, head="h")


def test_allowed_types_are_per_head():
    support = SupportSet(images=[np.zeros((4, 4, 3), np.uint8)], masks=[np.eye(4, dtype=bool)])
    assert normalize_prompts(support, None, (SupportSet,), head="fewshot") == {1: [support]}
    with pytest.raises(InputError, match="fewshot: object 1: prompts must be SupportSet, got Mask"):
        normalize_prompts(Mask(np.eye(4, dtype=bool)), None, (SupportSet,), head="fewshot")


@pytest.mark.parametrize("obj_id", [1, 255, np.uint8(3), np.int64(10**6)])
def test_check_obj_id_accepts_positive_ints(obj_id):
    assert check_obj_id(obj_id) == int(obj_id) and type(check_obj_id(obj_id)) is int


@pytest.mark.parametrize("obj_id", [0, -1, 1.0, None, np.bool_(True), "2"])
def test_check_obj_id_refuses_the_rest(obj_id):
    with pytest.raises(InputError, match="positive ints"):
        check_obj_id(obj_id)
