import inspect

import pytest
from fastapi import FastAPI

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


def test_every_exported_function_and_class_has_a_docstring() -> None:
    missing = [
        name
        for name in heygen_conventions.__all__
        if (inspect.isclass(value := getattr(heygen_conventions, name)) or inspect.isroutine(value))
        and not inspect.getdoc(value)
    ]
    assert missing == []


def test_configuration_errors_are_catchable_by_their_own_name() -> None:
    from heygen_conventions import ConfigurationError, Settings, install_auth

    async def no_user(subject: str) -> None:
        return None

    weak = Settings(environment="development", jwt_secret="s" * 31)
    with pytest.raises(ConfigurationError, match="31 bytes"):
        install_auth(FastAPI(), user_loader=no_user, settings=weak)
