"""Authorization guards. Stack them under ``@jwt_required()``."""

from functools import wraps

from flask_jwt_extended import current_user

from . import errors


def role_required(role: str):
    """Refuse (403 forbidden) a caller whose role is not ``role``."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if current_user.role != role:
                raise errors.Forbidden("This needs the admin role.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


admin_required = role_required("admin")
