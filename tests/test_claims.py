from filmmtl.claims import Claim


def test_claim_box_says_which_way_the_numbers_went():
    held, failed = Claim("A beats B", 3 > 2, "3 vs 2"), Claim("A beats B", 1 > 2, "1 vs 2")
    assert "holds here" in held._repr_markdown_() and "NOT" not in held._repr_markdown_()
    assert failed._repr_markdown_().startswith("> ⚠️ **NOT reproduced here.**")
    assert "1 vs 2" in repr(failed) and "NOT reproduced" in repr(failed)
