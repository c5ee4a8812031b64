import pytest

from jaxedit.attributes import ATTRIBUTES, attribute_index, parse_attributes
from jaxedit.errors import AttributeNameError


def test_celeba_order_matches_reference():
    assert len(ATTRIBUTES) == 40
    assert ATTRIBUTES[15] == "Eyeglasses" and ATTRIBUTES[20] == "Male"
    assert ATTRIBUTES[31] == "Smiling" and ATTRIBUTES[39] == "Young"


def test_lookup_is_case_insensitive_and_accepts_indices():
    assert attribute_index("smiling") == 31
    assert attribute_index("EYEGLASSES") == 15
    assert attribute_index("20") == 20
    assert parse_attributes("Smiling,15, young") == [31, 15, 39]
    assert parse_attributes(None) == list(range(40))


def test_unknown_name_lists_close_matches():
    with pytest.raises(AttributeNameError, match="Smiling"):
        attribute_index("smilling")
    with pytest.raises(AttributeNameError, match="out of range"):
        attribute_index(40)
    with pytest.raises(AttributeNameError, match="twice"):
        parse_attributes("Smiling,31")
