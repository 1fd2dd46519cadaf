"""Authorization guards. Stack them under ``@jwt_required()``."""

from functools import wraps

from flask import current_app
from flask_jwt_extended import current_user, get_jwt

from . import errors


def role_required(role: str):
    """Refuse (403 forbidden) a caller whose role is not ``role``."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if current_user.role != role:
                raise errors.Forbidden("This needs the admin role.")
            # API.md §8: only the admin endpoints; the user's own (enrolment
            # included) stay open, and the CLI is no view.
            if role == "admin" and current_app.config["REQUIRE_MFA_FOR_ADMINS"] and "mfa" not in get_jwt()["amr"]:
                raise errors.MfaEnrollmentRequired()
            return view(*args, **kwargs)

        return wrapper

    return decorator


admin_required = role_required("admin")
