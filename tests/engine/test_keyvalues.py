import pytest

from reverie.engine.keyvalues import parse_key_values


def test_values_parse_as_json_booleans_or_strings():
    got = parse_key_values(["steps=3", "lr=5e-4", "maps=[\"maze\"]", "flag=TRUE", "off=false", "name=runs/x",
                            "empty="])
    assert got == {"steps": 3, "lr": 5e-4, "maps": ["maze"], "flag": True, "off": False, "name": "runs/x",
                   "empty": ""}


@pytest.mark.parametrize("item", ["steps", "=3", ""])
def test_a_malformed_item_names_its_flag(item):
    with pytest.raises(SystemExit, match="--set expects KEY=VALUE"):
        parse_key_values([item], "--set")
