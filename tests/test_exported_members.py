import heygen_conventions


def test_all_is_sorted_and_lists_every_public_name() -> None:
    exported = heygen_conventions.__all__
    assert exported == sorted(exported)
    public = {
        name
        for name in vars(heygen_conventions)
        if not name.startswith("_") or name == "__version__"
    }
    # Submodules are reachable as attributes once imported; they are not API names.
    modules = {
        name for name, value in vars(heygen_conventions).items() if type(value).__name__ == "module"
    }
    assert set(exported) == public - modules


def test_every_exported_name_resolves() -> None:
    for name in heygen_conventions.__all__:
        assert getattr(heygen_conventions, name) is not None, name
