"""The password policy (hub/domain/password_policy.py)."""
from __future__ import annotations

import pytest

from hub.domain.password_policy import MAX_LENGTH, MIN_LENGTH, check_password, personal_inputs


def test_a_long_unrelated_pass_phrase_is_accepted() -> None:
    verdict = check_password("orbit lantern quiet mango", username="asha", display_name="Asha Rao")
    assert verdict.ok and verdict.reason is None and verdict.score >= 3


@pytest.mark.parametrize("password", ["", "short", "x" * (MIN_LENGTH - 1)])
def test_shorter_than_the_minimum_is_refused_with_the_count(password: str) -> None:
    verdict = check_password(password)
    assert not verdict.ok
    assert f"at least {MIN_LENGTH} characters ({len(password)} so far)" in (verdict.reason or "")


def test_too_long_is_refused_before_any_estimate() -> None:
    verdict = check_password("a" * (MAX_LENGTH + 1))
    assert not verdict.ok and "at most" in (verdict.reason or "") and verdict.score == 0


@pytest.mark.parametrize("password", ["password1234", "qwertyuiop123", "123456789012", "iloveyou2024"])
def test_common_passwords_are_refused_as_easy_to_guess(password: str) -> None:
    verdict = check_password(password)
    assert not verdict.ok
    assert (verdict.reason or "").startswith("Too easy to guess")


@pytest.mark.parametrize(("password", "who"), [
    ("priyanka.sharma99!", {"username": "priyanka", "display_name": "Priyanka Sharma"}),
    ("Zq9!kharbanda#Lm", {"username": "v.kharbanda"}),
    ("meera.iyer@campus.example", {"email": "meera.iyer@campus.example"}),
    ("xX-ravikumar-Xx-7", {"display_name": "Ravi Kumar", "username": "ravikumar"}),
])
def test_close_to_the_username_name_or_email_is_refused(password: str, who: dict[str, str]) -> None:
    verdict = check_password(password, **who)
    assert not verdict.ok
    assert verdict.reason == "The password is too close to your username, name or email."


def test_the_same_password_is_fine_for_someone_else() -> None:
    assert check_password("Zq9!kharbanda#Lm", username="someone").ok


def test_nul_is_refused() -> None:
    assert not check_password("orbit lantern\x00 quiet mango").ok


def test_personal_inputs_split_names_and_emails_and_skip_short_parts() -> None:
    assert personal_inputs("Asha Rao", "asha.rao@x.example", "") == [
        "asha rao", "asha", "asha.rao@x.example", "asha", "example"]


def test_verdict_serialises_for_the_live_check() -> None:
    assert check_password("short").as_dict() == {
        "ok": False, "reason": "Use at least 12 characters (5 so far).", "score": 0, "suggestions": []}
