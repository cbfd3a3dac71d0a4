from metachat.tenants import keys


def test_generated_keys_parse_and_verify() -> None:
    material = keys.generate()
    assert keys.parse_prefix(material.plaintext) == material.prefix
    stored = keys.digest(material.plaintext, pepper="p" * 32)
    assert len(stored) == 32
    assert keys.digest(material.plaintext, pepper="p" * 32) == stored
    assert keys.digest(material.plaintext + "x", pepper="p" * 32) != stored
    assert keys.digest(material.plaintext, pepper="q" * 32) != stored


def test_malformed_keys_have_no_prefix() -> None:
    for bad in ["", "mck_", "mck_short_x", "xyz_abcdefghijkl_secret", "mck_abcdefghijkl_"]:
        assert keys.parse_prefix(bad) is None


def test_keys_are_unique() -> None:
    assert len({keys.generate().plaintext for _ in range(200)}) == 200
