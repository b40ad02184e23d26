"""What the routes about one customer (`users`, `messages`, a user's grants in `benefits`)
share: the user's id in paths, and the profile, which must exist (404 otherwise)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from cjo.activities.people.profiles import ProfileActivities, ProfileContextInput
from cjo.api.problems import not_found
from cjo.steps.run import UserProfile

UserIdPath = Annotated[str, Path(min_length=1, max_length=128)]


async def stored_profile(profiles: ProfileActivities, user_id: str) -> UserProfile | None:
    (profile,) = (await profiles.profile_context(ProfileContextInput(user_ids=[user_id]))).profiles
    return profile


async def known_profile(profiles: ProfileActivities, user_id: str) -> UserProfile:
    """The user's profile; 404 when there is none."""
    profile = await stored_profile(profiles, user_id)
    if profile is None:
        raise not_found(f"no user {user_id}")
    return profile
